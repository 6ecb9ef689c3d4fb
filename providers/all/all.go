// Package all imports every built-in provider adapter (providers/...), so
// that their types are registered in providers.Builtin. cmd/iapd imports it.
package all

import (
	// One line per adapter package, sorted.
	_ "github.com/iapd/iapd/providers/directory"
	_ "github.com/iapd/iapd/providers/folder"
	_ "github.com/iapd/iapd/providers/httpsms"
	_ "github.com/iapd/iapd/providers/outbox"
	_ "github.com/iapd/iapd/providers/pingen"
	_ "github.com/iapd/iapd/providers/registers"
	_ "github.com/iapd/iapd/providers/smtp"
	_ "github.com/iapd/iapd/providers/twilio"
	_ "github.com/iapd/iapd/providers/vies"
	_ "github.com/iapd/iapd/providers/vonage"
)
