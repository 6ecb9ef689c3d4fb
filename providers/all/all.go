// Package all imports every built-in provider adapter, so that their
// types are registered in providers.Builtin. cmd/iapd imports it.
package all

import (
// One line per adapter package, sorted.
)
