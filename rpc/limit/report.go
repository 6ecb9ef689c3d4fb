package limit

import (
	"log/slog"
	"sync"
	"time"
)

// Counter counts a protective refusal by reason (metrics.Metrics).
type Counter interface{ Refused(reason string) }

// Reporter makes every refusal visible: it counts it (Counter, the
// iap_refusals_total{reason} metric) and logs a warning, at most one per
// reason per interval, with the number of refusals of that reason since
// the last line. Reasons are fixed snake_case words from the code, so
// its state is bounded. The zero of each dependency is allowed: a nil
// Counter counts nothing, a nil logger logs nothing. Safe for concurrent
// use; a nil *Reporter does nothing.
type Reporter struct {
	m     Counter
	log   *slog.Logger
	every time.Duration
	now   func() time.Time

	mu    sync.Mutex
	state map[string]*reasonState
}

type reasonState struct {
	last   time.Time
	quiet  int // refusals not logged since last
	logged bool
}

// NewReporter returns a reporter logging each reason at most once per
// every (default a minute when 0).
func NewReporter(m Counter, log *slog.Logger, every time.Duration) *Reporter {
	if every <= 0 {
		every = time.Minute
	}
	return &Reporter{m: m, log: log, every: every, now: time.Now, state: map[string]*reasonState{}}
}

// Refuse counts one refusal of reason and logs msg with attrs (which must
// hold no secret) unless reason was logged within the interval.
func (r *Reporter) Refuse(reason, msg string, attrs ...any) {
	if r == nil {
		return
	}
	if r.m != nil {
		r.m.Refused(reason)
	}
	if r.log == nil {
		return
	}
	now := r.now()
	r.mu.Lock()
	st := r.state[reason]
	if st == nil {
		st = &reasonState{}
		r.state[reason] = st
	}
	if st.logged && now.Sub(st.last) < r.every {
		st.quiet++
		r.mu.Unlock()
		return
	}
	quiet := st.quiet
	st.last, st.quiet, st.logged = now, 0, true
	r.mu.Unlock()
	r.log.Warn(msg, append([]any{"reason", reason, "refused_since_last_line", quiet}, attrs...)...)
}
