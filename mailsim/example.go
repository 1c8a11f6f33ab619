package mailsim

import "time"

// Example returns the bundled example world used by `bulkverify verify
// --sandbox`, matched row by row by examples/leads.csv. It returns a fresh
// value on every call, so callers may modify it.
//
// Hosts (all listening on the Sim's common SMTP port):
//
//	mx1.acme.test     127.0.0.11  primary MX of acme.test
//	mx2.acme.test     127.0.0.12  backup MX of acme.test
//	mx.mailhost.test  127.0.0.20  shared provider: the only MX of globex.test and initech.test
//	implicit.test     127.0.0.30  no MX record; reached through the domain's own A record
//	mx.slow.test      127.0.0.40  answers every RCPT after 1 s
//	mx.catchall.test  127.0.0.50  accepts every local part of catchall.test
//	gmail-smtp-in.l.google.com               127.0.0.63  MX of gmail.com (this world's)
//	bigcorp-test.mail.protection.outlook.com 127.0.0.64  MX of bigcorp.test
//	mx.gmial.com      127.0.0.65  accepts every local part of gmial.com
//
// Expected result of each data row of examples/leads.csv (row = 1-based data
// row, status / reason as in DESIGN.md, SMTP reply if any):
//
//	 1 alice@acme.test        deliverable                    250
//	 2 bob@ACME.TEST          deliverable                    250  (domain upper-case; probed as bob@acme.test)
//	 3 carol@acme.test        deliverable                    250
//	 4 zack@acme.test         undeliverable / mailbox_unknown 550 5.1.1
//	 5 full@acme.test         risky / mailbox_full           552 5.2.2
//	 6 blocked@acme.test      unknown / policy_block         550 5.7.1
//	 7 hank@globex.test       deliverable                    250  (via mx.mailhost.test)
//	 8 nobody@globex.test     undeliverable / mailbox_unknown 550 5.1.1
//	 9 peter@initech.test     deliverable                    250  (same MX host as globex.test)
//	10 milton@initech.test    deliverable                    250
//	11 bill@initech.test      undeliverable / mailbox_unknown 550 5.1.1
//	12 info@implicit.test     deliverable                    250  (implicit MX: A record of implicit.test)
//	13 ghost@implicit.test    undeliverable / mailbox_unknown 550 5.1.1
//	14 nora@nullmx.test       invalid / null_mx              no SMTP (RFC 7505 "0 .": the domain takes no mail)
//	15 sam@slow.test          deliverable                    250  (after about 1 s)
//	16 sid@slow.test          undeliverable / mailbox_unknown 550 5.1.1 (after about 1 s)
//	17 anyone@catchall.test   risky / accept_all             250  (catch_all=true)
//	18 ned@nonexistent.test   invalid / nxdomain             no SMTP (NXDOMAIN)
//	19 alice@acme.test        deliverable                    250  (duplicate of row 1: same result, probed once)
//	20 not-an-address         invalid / syntax               no DNS, no SMTP
//	21 dave@acme.test         deliverable                    250
//	22 jane.doe@gmail.com     deliverable                    250  (free provider; provider google)
//	23 kim@bigcorp.test       deliverable                    250  (provider microsoft: a Microsoft 365 tenant)
//	24 tom@mailinator.com     invalid / nxdomain             no SMTP (a disposable domain, not in this world)
//	25 jane.doe@gmial.com     risky / typo_domain            250  (a known typo of gmail.com; accepts everything)
//	26 pat@gmail.con          invalid / nxdomain             no SMTP (suggested: pat@gmail.com)
//	27 info@globex.test       deliverable                    250  (a role account)
//
// For `bulkverify doctor --sandbox` the world also publishes what the
// egress checks ask (a client on this machine sends from 127.0.0.1):
//
//	myaddr.mailsim.test      A/TXT: the asking client's own address
//	1.0.0.127.in-addr.arpa   PTR sandbox.bulkverify.test, whose A is 127.0.0.1 (forward-confirmed)
//	bulkverify.test          MX mx.mailhost.test, SPF "v=spf1 ip4:127.0.0.1 -all" (a MAIL FROM domain)
//	bl.mailsim.test          a DNSBL listing 127.0.0.1 (127.0.0.2), to show a listing
//	zen.mailsim.test         a DNSBL that refuses every query (127.255.255.254), as Spamhaus does
//	                         through public resolvers: "could not check"
//
// null_mx and nxdomain are "invalid" after DESIGN.md's "invalid (syntax, no
// mail domain)"; a classifier that prefers "undeliverable" for them only has
// to change those two expectations. Every probed domain except
// catchall.test rejects a random local part, so only row 17 is catch_all.
// DATA must never reach any host.
//
// examples/people.csv, for "bulkverify find", is answered from the same
// world: acme.test uses first.last (ada.lovelace, grace.hopper, jose.nunez),
// initech.test uses flast (pgibbons, mbolton), catchall.test accepts any
// guess, nonexistent.test does not exist.
func Example() World {
	return World{
		Domains: []Domain{
			{
				Name:      "acme.test",
				MX:        []MX{{Preference: 10, Host: "mx1.acme.test"}, {Preference: 20, Host: "mx2.acme.test"}},
				Mailboxes: []string{"alice", "bob", "carol", "dave", "ada.lovelace", "grace.hopper", "jose.nunez"},
				Replies: map[string]Reply{
					"full":    {Code: 552, Enhanced: "5.2.2", Message: "mailbox full"},
					"blocked": {Code: 550, Enhanced: "5.7.1", Message: "policy rejection"},
				},
			},
			{
				Name:      "globex.test",
				MX:        []MX{{Preference: 10, Host: "mx.mailhost.test"}},
				Mailboxes: []string{"hank", "marge", "info"},
			},
			{
				Name:      "initech.test",
				MX:        []MX{{Preference: 10, Host: "mx.mailhost.test"}},
				Mailboxes: []string{"peter", "milton", "samir", "pgibbons", "mbolton", "slumbergh", "slumbergh2"},
			},
			{
				Name:      "implicit.test",
				A:         []string{"127.0.0.30"},
				Mailboxes: []string{"info", "sales"},
			},
			{Name: "nullmx.test", NullMX: true},
			{
				Name:      "slow.test",
				MX:        []MX{{Preference: 10, Host: "mx.slow.test"}},
				Mailboxes: []string{"sam"},
			},
			{
				Name:     "catchall.test",
				MX:       []MX{{Preference: 10, Host: "mx.catchall.test"}},
				CatchAll: true,
			},
			{
				Name:      "bulkverify.test",
				MX:        []MX{{Preference: 10, Host: "mx.mailhost.test"}},
				TXT:       []string{"v=spf1 ip4:127.0.0.1 -all"},
				Mailboxes: []string{"verify", "abuse", "postmaster"},
			},
			{Name: "sandbox.bulkverify.test", A: []string{"127.0.0.1"}},
			// Names of real providers, served by this world alone, to show
			// the provider and signal columns: gmail.com is a free
			// provider run by Google; bigcorp.test a Microsoft 365 tenant;
			// gmial.com a typo domain a typosquatter accepts everything at.
			{
				Name:      "gmail.com",
				MX:        []MX{{Preference: 5, Host: "gmail-smtp-in.l.google.com"}},
				Mailboxes: []string{"jane.doe"},
			},
			{
				Name:      "bigcorp.test",
				MX:        []MX{{Preference: 0, Host: "bigcorp-test.mail.protection.outlook.com"}},
				Mailboxes: []string{"kim"},
			},
			{
				Name:     "gmial.com",
				MX:       []MX{{Preference: 10, Host: "mx.gmial.com"}},
				CatchAll: true,
			},
		},
		PTR: map[string]string{"127.0.0.1": "sandbox.bulkverify.test"},
		DNSBLs: []DNSBL{
			{Zone: "bl.mailsim.test", Listed: map[string]string{"127.0.0.1": "127.0.0.2"},
				Reason: "127.0.0.1 is listed in the sandbox to show what a listing looks like"},
			{Zone: "zen.mailsim.test", Refuse: "127.255.255.254"},
		},
		MyAddressName: "myaddr.mailsim.test",
		Hosts: []Host{
			{Name: "mx1.acme.test", IP: "127.0.0.11"},
			{Name: "mx2.acme.test", IP: "127.0.0.12"},
			{Name: "mx.mailhost.test", IP: "127.0.0.20"},
			{Name: "implicit.test", IP: "127.0.0.30"},
			{Name: "mx.slow.test", IP: "127.0.0.40", RcptDelay: time.Second},
			{Name: "mx.catchall.test", IP: "127.0.0.50"},
			{Name: "gmail-smtp-in.l.google.com", IP: "127.0.0.63"},
			{Name: "bigcorp-test.mail.protection.outlook.com", IP: "127.0.0.64"},
			{Name: "mx.gmial.com", IP: "127.0.0.65"},
		},
	}
}
