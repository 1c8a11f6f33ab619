package store

import "time"

// Freshness decides how long a stored answer may be reused instead of
// probing again. The zero value gives the defaults below.
//
// A verdict's lifetime is the first that applies of: ByReason[reason],
// DefaultByReason()[reason], ByStatus[status], DefaultByStatus()[status],
// Other. So a reason wins over its status (a greylisted answer is short-lived
// whatever its status's lifetime), and what is set wins over the default of
// the same key. 0 in a map means "never reuse". MaxAge, when
// positive, caps every lifetime (--max-age). Nothing older than the store's
// retention is ever served, whatever these say.
type Freshness struct {
	ByStatus map[string]time.Duration
	ByReason map[string]time.Duration
	// Other is the lifetime of a status listed nowhere. 0 = 6 hours.
	Other time.Duration
	// MaxAge caps every lifetime when positive; 0 = no cap.
	MaxAge time.Duration
	// CatchAll is how long a domain's catch-all answer is reused. 0 = 7 days.
	CatchAll time.Duration
	// Refresh: nothing is fresh (--refresh: probe everything, still write).
	Refresh bool
}

// Default lifetimes. Answers about a mailbox's existence change rarely;
// "accepts everything" and "mailbox full" more often; temporary answers
// (greylisting, timeouts, 4xx) describe a moment, not the mailbox.
const day = 24 * time.Hour

// DefaultByStatus are the lifetimes per status (output.Status* words).
func DefaultByStatus() map[string]time.Duration {
	m := map[string]time.Duration{}
	for _, st := range []string{"deliverable", "undeliverable", "invalid", "risky", "unknown"} {
		m[st], _ = defaultStatusLifetime(st)
	}
	return m
}

// DefaultByReason are the lifetimes per reason (pipeline.Reason* words)
// that differ from their status's.
func DefaultByReason() map[string]time.Duration {
	m := map[string]time.Duration{}
	for _, r := range []string{"greylisted", "temporary_failure", "timeout", "connection_failed",
		"connection_lost", "dns_error", "mx_unresolvable"} {
		m[r], _ = defaultReasonLifetime(r)
	}
	return m
}

// The defaults are switches, not maps, so that Lifetime allocates nothing.
func defaultStatusLifetime(status string) (time.Duration, bool) {
	switch status {
	case "deliverable", "undeliverable", "invalid":
		return 30 * day, true
	case "risky":
		return 7 * day, true
	case "unknown":
		return 6 * time.Hour, true
	}
	return 0, false
}

func defaultReasonLifetime(reason string) (time.Duration, bool) {
	switch reason {
	case "greylisted", "temporary_failure", "timeout", "connection_failed", "connection_lost", "dns_error", "mx_unresolvable":
		return time.Hour, true
	}
	return 0, false
}

// Default lifetimes of the scalar fields.
const (
	DefaultOther    = 6 * time.Hour
	DefaultCatchAll = 7 * day
)

// Lifetime is how long v's answer may be reused.
func (f Freshness) Lifetime(status, reason string) time.Duration {
	life, ok := f.ByReason[reason]
	if !ok {
		life, ok = defaultReasonLifetime(reason)
	}
	if !ok {
		life, ok = f.ByStatus[status]
	}
	if !ok {
		life, ok = defaultStatusLifetime(status)
	}
	if !ok {
		life = f.Other
		if life == 0 {
			life = DefaultOther
		}
	}
	if f.MaxAge > 0 && life > f.MaxAge {
		life = f.MaxAge
	}
	return life
}

// VerdictFresh reports whether v, checked at v.CheckedAt, may still be
// reused at now. A verdict from the future (a clock that went back) is not.
func (f Freshness) VerdictFresh(v Verdict, now time.Time) bool {
	if f.Refresh || v.CheckedAt.After(now) {
		return false
	}
	return now.Sub(v.CheckedAt) < f.Lifetime(v.Status, v.Reason)
}

// CatchAllFresh reports whether d's catch-all answer may still be reused.
func (f Freshness) CatchAllFresh(d DomainInfo, now time.Time) bool {
	if f.Refresh || d.CatchAll == TriUnknown || d.CatchAllAt.IsZero() || d.CatchAllAt.After(now) {
		return false
	}
	life := f.CatchAll
	if life == 0 {
		life = DefaultCatchAll
	}
	if f.MaxAge > 0 && life > f.MaxAge {
		life = f.MaxAge
	}
	return now.Sub(d.CatchAllAt) < life
}

// Fresh is VerdictFresh with the store's options and clock.
func (s *Store) Fresh(v Verdict) bool {
	now := s.now()
	if v.CheckedAt.Unix() < now.Add(-s.opts.Retention).Unix() {
		return false
	}
	return s.opts.Freshness.VerdictFresh(v, now)
}

// CatchAllFresh is Freshness.CatchAllFresh with the store's options and clock.
func (s *Store) CatchAllFresh(d DomainInfo) bool {
	now := s.now()
	if d.CatchAllAt.Before(now.Add(-s.opts.Retention)) {
		return false
	}
	return s.opts.Freshness.CatchAllFresh(d, now)
}
