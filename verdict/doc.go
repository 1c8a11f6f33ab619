// Package verdict owns bulkverify's vocabulary of reasons (the words of the
// reason column) and the reading of mail servers' replies: which status and
// reason a reply means, decided by one ordered table of rules.
//
// The rules are data, not code: configs/replies.yaml is the documented
// built-in table (embedded), and a user's file is layered over it (Load,
// Table.Extend). Each rule matches on the reply code, the enhanced status
// code, the text, the SMTP stage the reply was given at and the operator
// running the mail exchanger, and names where its reading comes from. The
// first rule that matches decides; a reply no rule matches is unknown.
//
// What the package leaves to others: parsing replies off the wire (probe,
// which also finds enhanced codes wherever servers put them), deciding which
// operator runs an MX host (the operator table: callers pass its name in),
// and acting on a decision (the pipeline branches on reasons for its
// mechanics: retry, back-off, a new transaction, stopping an egress).
// Statuses are output's (output.Status*).
//
// Tables are immutable once built and safe for concurrent use.
package verdict
