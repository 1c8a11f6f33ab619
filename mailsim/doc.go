// Package mailsim owns the simulated mail world: an in-process, loopback-only
// stand-in for "the internet's mail system" that tests, benchmarks and
// `bulkverify verify --sandbox` run against instead of real DNS and real mail
// exchangers.
//
// A World is declared as data (domains with their MX/A records, mailboxes
// and greylisting, and hosts with their behaviour); Start turns it into one
// authoritative DNS server (UDP and TCP on one 127.0.0.1 port, built on
// github.com/miekg/dns) and one SMTP server per host (github.com/emersion/go-smtp),
// each bound to its own 127.0.0.x address on a port common to all hosts, so a
// client that resolves an MX host to its A record and dials that address on
// Sim.SMTPPort reaches the right simulated server.
//
// Hosts can misbehave the ways real exchangers do: slow RCPT replies, a
// delayed banner, STARTTLS with a self-signed certificate, no PIPELINING,
// HELO only, 421 after a number of commands, a TCP reset after a number of
// RCPT, recipient limits per transaction (with go-smtp's 452 or an old
// server's 552) and per connection, an anti-harvest defence that refuses
// every recipient once a connection has asked for too many unknown ones, a
// reply too many to a chosen command, and greylisting per (client IP,
// sender, recipient) on a clock the test controls (Options.Now). Every
// domain accepts postmaster unless told not to (RFC 5321 §4.5.1).
//
// Like a real server's output buffer, a host holds its replies until it
// needs more bytes from the client, so the replies to a pipelined group
// leave in one write (a host with a RcptDelay writes each one at once). Hostile hosts (Host.Hostile) are not SMTP servers at
// all: silent, resetting, endless, huge or never-ending replies, for testing a
// client's bounds and timeouts. A host can also refuse chosen client
// addresses (Host.BlockClients) at the greeting or at RCPT, with a DNSBL-style
// reply, as servers do to blocklisted senders.
//
// For the egress checks (bulkverify doctor) the DNS server also publishes
// reverse DNS (World.PTR), TXT records such as SPF policies (Domain.TXT),
// DNS blocklist zones that list chosen addresses or refuse every query the
// way Spamhaus refuses public resolvers (World.DNSBLs), and a "my address"
// name that answers each client with its own address (World.MyAddressName).
//
// Options.RTT adds network latency to every
// SMTP reply and DNS answer without serialising pipelined replies, for
// benchmarks.
//
// go-smtp serves the sessions, but it has no setting for most of these
// behaviours, so each connection it serves is wrapped (see smtpConn): the
// wrapper hands go-smtp one command line at a time, which lets it answer or
// drop a command itself without reordering replies, rewrite the EHLO
// capabilities, run STARTTLS below go-smtp so commands stay visible after
// the handshake, and count commands.
//
// The Sim also counts what its clients did — DNS queries per name and type;
// SMTP connections, commands and their arrival times, client turns, TLS
// handshakes, peak concurrent connections, and connections per client
// address (ConnectionsFrom) per host — so tests can prove
// properties such as "one connection carried many RCPT commands", "the MX
// was looked up once", "pipelining cut the round trips", "no more than two
// connections per MX" or "DATA was never sent".
//
// mailsim imports no other package of this module. All addresses are in
// 127.0.0.0/8 (IPv6 ::1 is allowed for Domain.A); binding 127.0.0.x other than
// 127.0.0.1 works out of the box on Linux but needs loopback aliases elsewhere.
package mailsim
