// Package probe owns the SMTP conversation used to ask a mail exchanger whether
// it would accept mail for a recipient: connecting, reading the banner,
// EHLO (with HELO fallback), MAIL FROM, RCPT TO (pipelined per RFC 2920 when
// the server advertises it), RSET and QUIT. It never sends DATA or BDAT and has
// no method that could.
//
// It upgrades sessions to TLS with STARTTLS (RFC 3207): opportunistically by
// default, falling back to plaintext when the upgrade fails, or as a
// requirement (TLSMode).
//
// It also owns reading and parsing SMTP replies (RFC 5321 §4.2, with RFC 3463
// enhanced status codes) from untrusted servers: every read and write carries a
// deadline, reply lines and line counts are bounded, and command arguments are
// checked so an address can never inject a command.
//
// Deciding what a reply means for an address (deliverable, greylisted, …),
// retries, and how many sessions to open per host belong to the pipeline, not
// here.
package probe
