// Package signals owns the facts about an address that need no network: is
// its domain a disposable (throw-away) mail service, a free webmail
// provider, a known typo of a big provider's domain, or a close miss of one
// that deserves a suggestion; is its local part a role account (info@,
// sales@, noreply@) rather than a person.
//
// The facts come from lists embedded in the binary, under data/, each
// naming its source, date and licence in its header:
//
//   - data/disposable.txt: disposable domains (CC0, disposable.LICENSE).
//     A subdomain of a listed domain is disposable too, since such services
//     hand out whole subdomains (x.mailinator.com counts).
//   - data/free.txt: free webmail domains (MIT, free.LICENSE). Only the exact
//     domain counts: a subdomain of a provider is not one of its mailboxes.
//   - data/roles.txt: role local parts (RFC 2142 and common practice).
//   - data/typos.txt: known typo domains of the big providers, each with the
//     domain meant. Flagged whatever DNS says: typosquatters give such names
//     an MX that accepts everything.
//   - data/providers.txt: well-known consumer mail domains. None is ever a
//     typo; a domain without a mail host that is a close miss of one gets a
//     suggestion (see Set.Of).
//
// Users replace or extend the disposable, free and role lists with files of
// their own (Options); Load reads them and reports a bad line by file and
// line number.
//
// What it leaves to others: DNS (the caller says whether the domain has a
// mail host), the verdict (pipeline/classify.go decides what a typo domain
// means for the status), the mail provider behind an MX host (the operator
// table in configs/), output columns and counting (pipeline, output).
//
// Everything here is a pure function of its arguments and of data parsed
// once: no network, no clock (callers pass now), no mutable package state.
// A *Set is read-only after Load and safe for concurrent use.
package signals
