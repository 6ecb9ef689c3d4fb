package main

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"time"
)

// The logs of serve: one handler (text or json, on one writer) shared by
// three loggers with levels of their own — iapd's (log_level), the access
// log (log_access: Info lines, whatever log_level) and the storage
// engine's (log_storage: Badger's own lines, default warn).

// newLogger returns iapd's logger for cfg, writing to w. accessLogger and
// storageLogger derive the two others from it.
func newLogger(cfg Config, w io.Writer) *slog.Logger {
	lvl, _ := parseLevel(cfg.LogLevel) // validated
	opts := &slog.HandlerOptions{Level: slog.LevelDebug, ReplaceAttr: replaceDuration}
	var h slog.Handler
	if cfg.LogFormat == "json" {
		h = slog.NewJSONHandler(w, opts)
	} else {
		h = slog.NewTextHandler(w, opts)
	}
	return slog.New(&levelHandler{base: h, h: h, level: lvl})
}

// accessLogger returns the access log's logger (rpc.Config.AccessLog):
// nil unless cfg.LogAccess; its lines are written whatever log_level.
func accessLogger(cfg Config, log *slog.Logger) *slog.Logger {
	if !cfg.LogAccess {
		return nil
	}
	return derive(log, slog.LevelInfo).With("component", "access")
}

// storageLogger returns the storage engine's logger
// (badger.Options.EngineLogger), at log_storage.
func storageLogger(cfg Config, log *slog.Logger) *slog.Logger {
	lvl, err := parseLevel(cfg.LogStorage)
	if err != nil || cfg.LogStorage == "" {
		lvl = slog.LevelWarn
	}
	return derive(log, lvl).With("component", "badger")
}

// derive returns a logger on log's handler at level lvl; a logger that
// newLogger did not build (a test's) is returned as it is.
func derive(log *slog.Logger, lvl slog.Level) *slog.Logger {
	if lh, ok := log.Handler().(*levelHandler); ok {
		return slog.New(&levelHandler{base: lh.base, h: lh.base, level: lvl})
	}
	return log
}

// levelHandler passes the records at level and above to h; base is the
// handler h derives from (before WithAttrs/WithGroup), for derive.
type levelHandler struct {
	base, h slog.Handler
	level   slog.Level
}

func (l *levelHandler) Enabled(ctx context.Context, lvl slog.Level) bool {
	return lvl >= l.level && l.h.Enabled(ctx, lvl)
}

func (l *levelHandler) Handle(ctx context.Context, r slog.Record) error { return l.h.Handle(ctx, r) }

func (l *levelHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return &levelHandler{base: l.base, h: l.h.WithAttrs(as), level: l.level}
}

func (l *levelHandler) WithGroup(name string) slog.Handler {
	return &levelHandler{base: l.base, h: l.h.WithGroup(name), level: l.level}
}

// replaceDuration writes a time.Duration as a duration string, without
// the zero units Go adds ("1h", not "1h0m0s"), in text and in JSON (whose
// handler would write nanoseconds).
func replaceDuration(_ []string, a slog.Attr) slog.Attr {
	if a.Value.Kind() == slog.KindDuration {
		a.Value = slog.StringValue(shortDuration(a.Value.Duration()))
	}
	return a
}

// shortDuration is d.String() without trailing zero minutes and seconds:
// 1h0m0s → 1h, 24h0m0s → 24h, 1m0s → 1m, 1h30m0s → 1h30m; 1.5s as is.
func shortDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = s[:len(s)-2]
	}
	if strings.HasSuffix(s, "h0m") {
		s = s[:len(s)-2]
	}
	return s
}
