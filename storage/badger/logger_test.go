package badger

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
)

// Badger's own lines go to EngineLogger at the levels Badger gives them;
// without one, only its warnings and errors reach Logger, so that a
// ledger logging at debug is not buried in the engine's chatter.
func TestEngineLogger(t *testing.T) {
	open := func(opts Options) {
		t.Helper()
		opts.Dir = t.TempDir()
		l, err := Open(opts)
		if err != nil {
			t.Fatal(err)
		}
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
	}
	debug := &slog.HandlerOptions{Level: slog.LevelDebug}

	var ledger, engine bytes.Buffer
	open(Options{Logger: slog.New(slog.NewTextHandler(&ledger, debug)), EngineLogger: slog.New(slog.NewTextHandler(&engine, debug))})
	if strings.Contains(ledger.String(), "engine=badger") {
		t.Errorf("Badger's lines reached Logger beside EngineLogger:\n%s", ledger.String())
	}
	if !strings.Contains(engine.String(), "level=INFO") || !strings.Contains(engine.String(), "level=DEBUG") {
		t.Errorf("EngineLogger at debug did not get Badger's info and debug lines:\n%s", engine.String())
	}
	if strings.Contains(engine.String(), "ledger opened") {
		t.Errorf("the ledger's own lines went to EngineLogger:\n%s", engine.String())
	}

	ledger.Reset()
	open(Options{Logger: slog.New(slog.NewTextHandler(&ledger, debug))})
	if strings.Contains(ledger.String(), "engine=badger") {
		t.Errorf("without EngineLogger, Badger's info and debug lines reached Logger:\n%s", ledger.String())
	}
	if !strings.Contains(ledger.String(), "ledger opened") {
		t.Errorf("the ledger's own lines are missing:\n%s", ledger.String())
	}
}
