// Package mailsim owns the simulated mail world: an in-process, loopback-only
// stand-in for "the internet's mail system" that tests, benchmarks and
// `bulkverify verify --sandbox` run against instead of real DNS and real mail
// exchangers.
//
// A World is declared as data (domains with their MX/A records and mailboxes,
// and hosts with their behaviour); Start turns it into one authoritative DNS
// server (UDP and TCP on one 127.0.0.1 port, built on github.com/miekg/dns) and
// one SMTP server per host (github.com/emersion/go-smtp), each bound to its own
// 127.0.0.x address on a port common to all hosts, so a client that resolves
// an MX host to its A record and dials that address on Sim.SMTPPort reaches the
// right simulated server.
//
// The Sim also counts what its clients did — DNS queries per name and type,
// SMTP connections and commands per host, counted from the raw client byte
// stream — so tests can prove properties such as "one connection carried many
// RCPT commands", "the MX was looked up once" or "DATA was never sent".
//
// mailsim imports no other package of this module. All addresses are in
// 127.0.0.0/8 (IPv6 ::1 is allowed for Domain.A); binding 127.0.0.x other than
// 127.0.0.1 works out of the box on Linux but needs loopback aliases elsewhere.
package mailsim
