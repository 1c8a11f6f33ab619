// Package pipeline owns the flow of one verification run: it reads the input
// rows, collapses duplicate addresses, groups them by domain, resolves each
// domain once, routes the addresses to their mail exchangers so that domains
// sharing an MX host share its connections, drives a bounded pool of probing
// sessions per host, classifies every reply and hands exactly one result per
// input row to the output writer. It holds no network code of its own: DNS is
// the resolve package's and SMTP is the probe package's.
package pipeline
