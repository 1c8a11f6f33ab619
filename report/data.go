package report

import "time"

// Data is everything the report shows about one run. Its JSON form is what
// a run's summary can embed; the report shows exactly these numbers.
// Slices may come in any order (the report sorts them) and at any length
// (the report shows the top entries and says how many it left out), but
// callers should cap them for the summary's sake: see the field comments.
type Data struct {
	Title    string        `json:"title,omitempty"` // "" = "bulkverify report"
	Command  string        `json:"command"`         // "verify" or "find"
	Input    string        `json:"input,omitempty"` // the input file as named on the command line
	Started  time.Time     `json:"started"`
	Duration time.Duration `json:"duration_ns"`

	Rows        int `json:"rows"`        // input rows read this run
	Addresses   int `json:"addresses"`   // distinct addresses probed or judged
	Domains     int `json:"domains"`     // distinct domains
	MXHosts     int `json:"mx_hosts"`    // MX hosts at least one connection was made to
	Connections int `json:"connections"` // SMTP sessions established

	ByStatus map[string]int `json:"by_status"` // rows by status
	ByReason []Reason       `json:"by_reason"` // rows by status and reason

	// TopDomains are the domains with the most undeliverable and unknown
	// rows; 20 or so is plenty.
	TopDomains []Domain `json:"top_domains"`
	// Hosts are per-MX-host SMTP figures; the 50 or so with the most RCPT or
	// the most undeliverable and unknown answers are plenty.
	Hosts []Host `json:"hosts"`

	Signals Signals `json:"signals"`

	Settings []Setting `json:"settings"`           // shown as given; never secrets
	Warnings []string  `json:"warnings,omitempty"` // e.g. a stale disposable list
}

// Reason counts the rows with one status and reason.
type Reason struct {
	Status string `json:"status"`
	Reason string `json:"reason"`
	Rows   int    `json:"rows"`
}

// Domain counts the rows at one domain.
type Domain struct {
	Domain        string `json:"domain"`
	Rows          int    `json:"rows"`
	Undeliverable int    `json:"undeliverable"`
	Unknown       int    `json:"unknown"`
}

// Host is what happened at one MX host.
type Host struct {
	Host          string        `json:"host"`
	Provider      string        `json:"provider,omitempty"` // operator from the operator table, "" if none
	Addresses     int           `json:"addresses"`          // distinct addresses routed to it
	Connections   int           `json:"connections"`        // SMTP sessions established
	RCPT          int           `json:"rcpt"`               // RCPT TO commands sent
	Replies4xx    int           `json:"replies_4xx"`        // 4xx replies to any command
	Replies5xx    int           `json:"replies_5xx"`        // 5xx replies to any command
	Greylisted    int           `json:"greylisted"`         // addresses greylisted at least once
	PolicyBlocks  int           `json:"policy_blocks"`      // policy refusals (blocklists, 5.7.x, 554)
	Undeliverable int           `json:"undeliverable"`      // final verdicts
	Unknown       int           `json:"unknown"`            // final verdicts
	LatencyP50    time.Duration `json:"latency_p50_ns"`     // reply latency, median; 0 = not measured
	LatencyP95    time.Duration `json:"latency_p95_ns"`     // 95th percentile
}

// Signals counts the rows that carry each signal.
type Signals struct {
	Disposable    int            `json:"disposable"`
	Free          int            `json:"free"`
	Role          int            `json:"role"`
	TypoKnown     int            `json:"typo_known"`     // at a known typo domain
	TypoSuggested int            `json:"typo_suggested"` // with a suggested address (known typos included)
	ByProvider    map[string]int `json:"by_provider"`    // rows by mail provider ("" keys are left out)
}

// Setting is one line of the run's settings, shown as given.
type Setting struct {
	Key   string `json:"key"`
	Value string `json:"value"`
}
