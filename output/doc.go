// Package output owns the result side of bulkverify: the Result of one input
// row and the writers that turn results into CSV (via jszwec/csvutil) or JSON
// Lines, each row carrying the user's input columns untouched followed by the
// verdict.
//
// Server-supplied text (SMTP reply text, MX host names, enhanced codes) is
// untrusted: the writers pass it through Sanitize themselves, so no caller can
// forget and a hostile mail server cannot put a formula or a line break into a
// spreadsheet cell.
package output
