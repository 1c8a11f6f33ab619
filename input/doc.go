// Package input owns everything between the user's CSV file and a probe-able
// address: reading the CSV (BOM, CRLF, ragged rows, malformed-file errors that
// name the line), finding the address column, and deciding whether a value is a
// syntactically valid RFC 5321 mailbox (RFC 6531 UTF-8 local parts, IDNA
// domains converted to A-labels).
//
// It adds no network access and no judgement beyond syntax: whether a domain
// receives mail is for resolve/ and probe/ to find out.
package input
