// Package finder owns the network-free half of finding a person's address:
// splitting a name into its parts, folding those parts to what mail systems
// accept (lower-case ASCII), taking the domain from a domain, website URL or
// address, expanding the ordered address patterns of configs/patterns.yaml
// into candidate addresses (never a role account such as hr@ or jobs@, which
// reaches a function, not a person; the role list is the signals
// package's), and — once the caller has probed the candidates — deciding
// which address to report and how confident to be, including the pattern a
// domain uses when several of its people were found.
//
// Everything here is a pure function of its arguments (and of the built-in
// role list, parsed once): no network, no clock, no mutable package state. Probing is the pipeline's job; finder only says what
// to probe and what the answers mean.
package finder
