package admin

import (
	"net/http"
	"time"

	"github.com/iapd/iapd/storage"
)

// RegisterImports runs online imports of company register files into the
// index the registers provider serves (cmd/iapd gives
// providers/registers/online's); nil makes the routes answer 503.
type RegisterImports interface {
	// StartImport checks the request and starts importing files (absolute
	// paths on the server's machine) of format in the background. Errors:
	// Invalid (unknown format, a path that is not an absolute regular
	// file), Conflict (an import runs), Unavailable (iapd is stopping).
	StartImport(format string, files []string) error
	// ImportStatus returns the running or last import; false when none
	// ran since iapd started.
	ImportStatus() (RegisterImportStatus, bool)
}

// RegisterImportStatus is the answer of GET /v1/registers/import.
type RegisterImportStatus struct {
	State      string    `json:"state"` // running, done, failed, aborted (iapd stopped)
	Format     string    `json:"format"`
	Files      []string  `json:"files"`
	File       string    `json:"file,omitempty"` // being read
	BytesDone  int64     `json:"bytes_done"`
	BytesTotal int64     `json:"bytes_total"`
	Started    time.Time `json:"started"`
	Finished   time.Time `json:"finished,omitzero"`
	Records    int64     `json:"records"`
	Bad        int64     `json:"bad_rows"`
	BadRows    []string  `json:"bad_rows_shown"` // the first 100, "file:line: reason"
	New        int64     `json:"new"`
	Changed    int64     `json:"changed"`
	Unchanged  int64     `json:"unchanged"`
	StruckOff  int64     `json:"struck_off"`
	Error      string    `json:"error,omitempty"`
}

func (s *server) registerRoutes() {
	s.mux.HandleFunc("POST /v1/registers/import", s.startRegisterImport)
	s.mux.HandleFunc("GET /v1/registers/import", s.registerImportStatus)
}

func (s *server) noRegisters(w http.ResponseWriter, r *http.Request) bool {
	if s.regs != nil {
		return false
	}
	s.fail(w, r, storage.E("registers import", storage.Unavailable,
		"no company registers are served: configure a registers provider, or make the first import offline (iapd directory import -data DIR)"))
	return true
}

// startRegisterImport: {"format": "companies-house", "files": ["/abs/path.csv"]}
// → 202 and the status.
func (s *server) startRegisterImport(w http.ResponseWriter, r *http.Request) {
	if s.noRegisters(w, r) {
		return
	}
	var req struct {
		Format string   `json:"format"`
		Files  []string `json:"files"`
	}
	if err := decode(r, &req, false); err != nil {
		s.fail(w, r, err)
		return
	}
	if err := s.regs.StartImport(req.Format, req.Files); err != nil {
		s.fail(w, r, err)
		return
	}
	st, _ := s.regs.ImportStatus()
	s.log.Info("admin: register import started", "format", req.Format, "files", len(req.Files))
	s.reply(w, http.StatusAccepted, st)
}

func (s *server) registerImportStatus(w http.ResponseWriter, r *http.Request) {
	if s.noRegisters(w, r) {
		return
	}
	st, ok := s.regs.ImportStatus()
	if !ok {
		s.fail(w, r, storage.E("registers import", storage.NotFound, "no import ran since iapd started"))
		return
	}
	s.reply(w, http.StatusOK, st)
}
