package main

import (
	"context"
	"errors"
	"log/slog"
	"sort"

	"github.com/iapd/iapd/providers/registers"
	"github.com/iapd/iapd/providers/registers/online"
	"github.com/iapd/iapd/rpc/admin"
	"github.com/iapd/iapd/storage"
)

// registerImports gives the admin API the online imports of company
// registers (POST/GET /v1/registers/import) into the index of the
// registers instance built (the one named "registers" first, else the
// first by name); nil when none is built. stop cancels a running import
// (aborted: nothing struck off) and waits for it: serve calls it before
// the providers close.
func (w *wiring) registerImports(ctx context.Context, log *slog.Logger) (imports admin.RegisterImports, stop func()) {
	names := make([]string, 0, len(w.providers))
	for n, p := range w.providers {
		if _, ok := p.(*registers.Registers); ok {
			names = append(names, n)
		}
	}
	if len(names) == 0 {
		return nil, func() {}
	}
	sort.Slice(names, func(i, j int) bool {
		return names[i] == "registers" || (names[j] != "registers" && names[i] < names[j])
	})
	ictx, cancel := context.WithCancel(ctx)
	log = log.With("provider", names[0])
	im := online.New(ictx, w.providers[names[0]].(*registers.Registers), nil, nil, log)
	return onlineImports{im: im, log: log}, func() { cancel(); im.Wait() }
}

// onlineImports adapts online.Importer to admin.RegisterImports.
type onlineImports struct {
	im  *online.Importer
	log *slog.Logger
}

func (o onlineImports) StartImport(format string, files []string) error {
	const op = "registers import"
	err := o.im.Start(format, files)
	switch {
	case err == nil:
		o.log.Info("online import of company registers started", "format", format, "files", files)
		return nil
	case errors.Is(err, online.ErrInvalid):
		return storage.E(op, storage.Invalid, err.Error())
	case errors.Is(err, online.ErrRunning):
		return storage.E(op, storage.Conflict, err.Error())
	case errors.Is(err, context.Canceled):
		return storage.E(op, storage.Unavailable, "iapd is stopping")
	}
	return storage.Wrap(op, storage.Internal, err)
}

func (o onlineImports) ImportStatus() (admin.RegisterImportStatus, bool) {
	s, ok := o.im.Status()
	return admin.RegisterImportStatus{
		State: s.State, Format: s.Format, Files: s.Files, File: s.File,
		BytesDone: s.BytesDone, BytesTotal: s.BytesTotal,
		Started: s.Started, Finished: s.Finished,
		Records: s.Records, Bad: s.Bad, BadRows: s.BadRows,
		New: s.Stats.New, Changed: s.Stats.Changed, Unchanged: s.Stats.Unchanged, StruckOff: s.Stats.StruckOff,
		Error: s.Error,
	}, ok
}
