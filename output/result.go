package output

import "time"

// Status values: the verdict for one address.
const (
	StatusDeliverable   = "deliverable"   // the mail exchanger accepted the mailbox
	StatusUndeliverable = "undeliverable" // the mail exchanger rejected the mailbox
	StatusRisky         = "risky"         // accepted, but the answer means little (accept-all domain, full mailbox…)
	StatusUnknown       = "unknown"       // no answer after retries: temporary failures, blocks, timeouts
	StatusInvalid       = "invalid"       // not an address we can ask about: syntax, no mail domain
)

// Result is the verdict for one input row (DESIGN.md "Result of one address").
type Result struct {
	Row          int       `csv:"row" json:"row"`
	Email        string    `csv:"email" json:"email"`
	Status       string    `csv:"status" json:"status"`
	Reason       string    `csv:"reason" json:"reason"`
	SMTPCode     int       `csv:"smtp_code,omitempty" json:"smtp_code,omitempty"`
	EnhancedCode string    `csv:"enhanced_code" json:"enhanced_code,omitempty"`
	SMTPMessage  string    `csv:"smtp_message" json:"smtp_message,omitempty"`
	MXHost       string    `csv:"mx_host" json:"mx_host,omitempty"`
	CatchAll     *bool     `csv:"catch_all,omitempty" json:"catch_all,omitempty"` // nil = not determined
	TLS          *bool     `csv:"tls,omitempty" json:"tls,omitempty"`             // whether the session that answered used STARTTLS; nil = no session
	Attempts     int       `csv:"attempts" json:"attempts"`
	CheckedAt    time.Time `csv:"checked_at" json:"checked_at"` // written as RFC 3339 UTC, seconds precision

	Provider string `csv:"provider" json:"provider,omitempty"` // operator of the MX host (operator table), "" when not a known one
	Egress   string `csv:"egress" json:"egress,omitempty"`     // source address or proxy the session that answered came from

	// Signals: facts about the address that need no network.
	Disposable     bool   `csv:"disposable" json:"disposable"`
	Free           bool   `csv:"free" json:"free"`
	Role           bool   `csv:"role" json:"role"`
	TypoSuggestion string `csv:"typo_suggestion" json:"typo_suggestion,omitempty"` // the address probably meant

	// Source says where the verdict comes from: SourceProbed or
	// SourceStored (with the CheckedAt of the run that probed it).
	Source string `csv:"source" json:"source,omitempty"`
}

// ResultColumns returns the result column names in the order they are written,
// after the input columns.
func ResultColumns() []string { return Columns[Result]() }

// Limits, in runes, for server-supplied text.
const (
	maxMessageRunes  = 200
	maxHostRunes     = 255 // a DNS name is at most 253 octets; more is garbage
	maxEnhancedRunes = 32  // "5.1.1" is 5; 3 digits . 3 digits . 3 digits is 11
)

func (r Result) rowNumber() int { return r.Row }

// clean returns r with its server-supplied text made safe for a cell and
// the time normalised, so both writers emit the same values.
func (r Result) clean() Result {
	cleanServerText(&r.SMTPMessage, &r.MXHost, &r.EnhancedCode, &r.CheckedAt)
	return r
}

// cleanServerText makes the server-supplied text of a row safe for a cell
// and normalises its time, for every kind of row alike.
func cleanServerText(message, host, enhanced *string, at *time.Time) {
	*message = Sanitize(*message, maxMessageRunes)
	*host = Sanitize(*host, maxHostRunes)
	*enhanced = Sanitize(*enhanced, maxEnhancedRunes)
	*at = at.UTC().Truncate(time.Second)
}

// fitFields returns fields padded with "" or cut to n, in a new slice with
// room for extra more.
func fitFields(fields []string, n, extra int) []string {
	out := make([]string, n, n+extra)
	copy(out, fields)
	return out
}

// Values of the source column.
const (
	SourceProbed = "probed" // decided by this run: probed, looked up in DNS, or judged by its syntax
	SourceStored = "stored" // reused from the verdict store, as an earlier run decided it (checked_at says when)
)

// CleanMessage is server text as the message column holds it: sanitised and
// cut as every writer does, for keeping it elsewhere (the verdict store) so
// that writing it again gives the same cell.
func CleanMessage(s string) string { return Sanitize(s, maxMessageRunes) }
