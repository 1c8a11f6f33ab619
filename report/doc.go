// Package report owns the HTML report of a run (--report FILE.html): one
// self-contained file that opens from disk with no network (no scripts,
// fonts, images or style sheets from elsewhere; a Content-Security-Policy
// in the file forbids them), readable on a phone and in print.
//
// The report is a pure function of Data, the JSON-tagged record of a run
// that the caller fills (and may embed in the run's summary JSON): counts
// by status and reason, the domains and MX hosts with the most
// undeliverable and unknown answers, per-MX-host SMTP figures, the
// signals' counts, the settings and the duration. Render writes it; the
// charts are inline SVG generated here, so the file carries no charting
// library and every number is in the markup, testable in a real browser.
//
// Every string in Data is treated as untrusted (MX host names and domains
// come from DNS and from the input file): html/template escapes it in its
// context, and long ones are clipped.
//
// Tally and Latencies help gather the numbers; WriteFile writes the file
// atomically.
//
// What it leaves to others: gathering the numbers (pipeline, probe),
// choosing the settings to show and keeping secrets out of them (cmd).
package report
