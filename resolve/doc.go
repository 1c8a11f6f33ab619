// Package resolve owns everything bulkverify asks of DNS: finding the mail
// exchangers of a domain (MX, the implicit MX of RFC 5321 §5.1, the null MX
// of RFC 7505), resolving exchanger host names to addresses, and telling
// permanent answers (NXDOMAIN, no mail host) apart from temporary failures
// (SERVFAIL, REFUSED, timeouts) so callers can retry only what may succeed.
// For the checks of the egress package it also answers TXT, PTR, A-only and
// raw MX lookups (records.go), with the same distinctions and the same cache.
//
// Queries go straight to the configured recursive resolvers with
// github.com/miekg/dns (UDP with EDNS0, TCP when truncated), because the Go
// standard resolver hides the distinctions above. Answers, positive and
// negative, are kept in an LRU cache for their DNS TTL, and concurrent
// lookups of the same name and type share one query, so a list with a
// million addresses at one domain costs one MX query. UDP sockets are
// reused for a bounded number of queries (pool.go says how that keeps
// source ports changing).
package resolve
