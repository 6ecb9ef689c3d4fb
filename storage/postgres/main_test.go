package postgres

import (
	"os"
	"testing"

	"github.com/iapd/iapd/storage/postgres/pgtest"
)

// TestMain stops the cluster pgtest may have started.
func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }
