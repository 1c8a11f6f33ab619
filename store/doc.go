// Package store is what bulkverify remembers between runs: the verdict of
// each address it probed, each domain's catch-all answer, and what it learnt
// about each MX host. A run reuses a verdict that is still fresh instead of
// probing the address again, which is faster and kinder to the receiving
// hosts.
//
// # Personal data
//
// The store holds e-mail addresses, which are personal data. The file is
// created with mode 0600 in a directory created with mode 0700 (a looser
// existing file is tightened to 0600 on open); its default place is
// bulkverify/store.db under the user's cache directory (DefaultPath;
// "bulkverify store stats" prints it). Every entry is deleted once it is
// older than the retention (Options.Retention, default 90 days): never
// served after that, deleted at Open when the last deletion is more than a
// day old, by Prune, and whenever its segment is compacted. ForgetAddress
// and ForgetDomain delete a person's or a domain's data on request.
//
// # Namespaces
//
// Verdicts are kept per namespace (e.g. one per customer or list). A lookup
// names the namespaces it may read: the run's own, plus any shared ones it
// names explicitly; nothing is served across namespaces otherwise.
//
// Domain and MX host knowledge is shared by all namespaces, deliberately:
// it is about mail infrastructure, not about persons (a domain's catch-all
// setting, a host's recipient limits, STARTTLS, greylisting, and its
// refusals of our egresses), and politeness must not depend on the
// namespace: a host that refused one of our egresses, or told us its
// limits, has told bulkverify, not one customer's list. Refusals are kept
// per egress, so a refusal of one egress does not stop probing from
// another. ForgetDomain over all namespaces deletes the domain's catch-all
// answer too.
//
// # Keys and lifetimes
//
//   - verdict: key namespace \x00 domain \x00 address (bytes as the caller
//     normalised them); value: checked_at, status, reason, SMTP code,
//     enhanced code, message (at most MaxMessageBytes), MX host, catch_all,
//     tls, egress, attempts. How long a verdict may be reused is
//     Freshness's (defaults: deliverable, undeliverable and invalid 30
//     days, risky 7 days, unknown 6 hours, and 1 hour for greylisted,
//     temporary_failure, timeout, connection_failed, connection_lost,
//     dns_error, mx_unresolvable), capped by --max-age; how long it is kept
//     is the retention.
//   - domain: key domain; value: catch-all answer, the MX host that gave it,
//     and when. Reused for Freshness.CatchAll (default 7 days).
//   - MX host: key host name; value: learnt recipient limits per
//     transaction and per connection, STARTTLS offered, last greylisting,
//     and refusals (egress, operator, reply text, time), each with its time.
//     The caller decides how long each fact binds; the store drops facts
//     past the retention.
//
// # The file
//
// One file, a bbolt database (go.etcd.io/bbolt: pure Go, crash-safe
// copy-on-write B+tree with atomic, fsynced commits), schema version
// SchemaVersion (meta bucket, key "schema"). Buckets:
//
//	meta       schema, next segment id, time of the last prune
//	segments   live segment id -> entries, bytes, oldest checked_at
//	seg/<id>   one sorted segment of verdicts: last key of a block -> block
//	domains    domain -> catch-all answer
//	mx         MX host -> what was learnt about it
//
// Verdicts are written as sorted segments merged in the background of the
// writer (see segment.go): a batch of Puts costs one sort and a few large
// writes, not one B-tree insertion per verdict.
//
// Writes are buffered and committed in batches (Options.BatchSize, at
// least every Options.FlushInterval, and by Flush and Close), each batch in
// one transaction: killing the process loses at most the batches not yet
// committed, never part of one, and never damages the file. One process at a
// time has the file open: another Open fails with *InUseError (a run is
// refused, not made to wait).
//
// What the store leaves to others: deciding which addresses to probe and
// writing the probed/stored column (pipeline), the flags and the
// management commands (cmd/bulkverify), and what the knowledge means for
// politeness (pipeline, egress).
package store
