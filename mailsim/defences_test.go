package mailsim

import (
	"strings"
	"testing"
)

// The replies to a pipelined group leave the server in one write, as a real
// server's output buffer sends them: one read at the client gets them all.
func TestPipelinedRepliesInOneWrite(t *testing.T) {
	t.Parallel()
	s := startSim(t, oneHostWorld("burst", "127.0.3.1", Host{}))
	c := dialSMTP(t, s, "127.0.3.1")
	c.ehlo()
	c.send("MAIL FROM:<>", "RCPT TO:<alice@burst.test>", "RCPT TO:<nobody@burst.test>", "RCPT TO:<bob@burst.test>")
	buf := make([]byte, 4096)
	n, err := c.conn.Read(buf)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Count(string(buf[:n]), "\r\n"); got != 4 {
		t.Errorf("one read got %d reply lines, want all 4: %q", got, buf[:n])
	}
}

func TestPostmasterExists(t *testing.T) {
	t.Parallel()
	w := oneHostWorld("pm", "127.0.3.2", Host{})
	w.Domains = append(w.Domains, Domain{Name: "nopm.test", MX: []MX{{Preference: 10, Host: "mx.pm.test"}}, NoPostmaster: true})
	s := startSim(t, w)
	c := dialSMTP(t, s, "127.0.3.2")
	c.ehlo()
	c.expect("MAIL FROM:<>", 250, "")
	c.expect("RCPT TO:<Postmaster@pm.test>", 250, "")
	c.expect("RCPT TO:<postmaster@nopm.test>", 550, "5.1.1")
}

func TestExtraReplyTo(t *testing.T) {
	t.Parallel()
	s := startSim(t, oneHostWorld("extra", "127.0.3.3", Host{ExtraReplyTo: "rset"}))
	c := dialSMTP(t, s, "127.0.3.3")
	c.ehlo()
	c.expect("RSET", 250, "")
	// The second reply to RSET is still waiting: a client counting replies
	// takes it for the reply to MAIL, and so on down the line.
	c.expect("MAIL FROM:<>", 250, "")
	c.expect("RCPT TO:<nobody@extra.test>", 250, "") // MAIL's reply
	c.expect("NOOP", 550, "5.1.1")                   // the RCPT's
}

func TestRecipientLimitReply(t *testing.T) {
	t.Parallel()
	s := startSim(t, oneHostWorld("old", "127.0.3.4", Host{
		MaxRecipients:       2,
		RecipientLimitReply: &Reply{Code: 552, Enhanced: "5.5.3", Message: "Too many recipients"},
	}))
	c := dialSMTP(t, s, "127.0.3.4")
	c.ehlo()
	c.expect("MAIL FROM:<>", 250, "")
	c.expect("RCPT TO:<alice@old.test>", 250, "")
	c.expect("RCPT TO:<nobody@old.test>", 550, "5.1.1") // refused ones do not count
	c.expect("RCPT TO:<bob@old.test>", 250, "")
	c.expect("RCPT TO:<alice@old.test>", 552, "5.5.3 Too many recipients")
	c.expect("RSET", 250, "")
	c.expect("MAIL FROM:<>", 250, "")
	c.expect("RCPT TO:<alice@old.test>", 250, "") // a new transaction starts over
}

func TestMaxRcptPerConnection(t *testing.T) {
	t.Parallel()
	s := startSim(t, oneHostWorld("percon", "127.0.3.5", Host{MaxRcptPerConnection: 3}))
	c := dialSMTP(t, s, "127.0.3.5")
	c.ehlo()
	c.expect("MAIL FROM:<>", 250, "")
	c.expect("RCPT TO:<alice@percon.test>", 250, "")
	c.expect("RCPT TO:<bob@percon.test>", 250, "")
	c.expect("RSET", 250, "")
	c.expect("MAIL FROM:<>", 250, "")
	c.expect("RCPT TO:<nobody@percon.test>", 550, "5.1.1")
	// The cap is per connection: a new transaction does not reset it.
	c.expect("RSET", 250, "")
	c.expect("MAIL FROM:<>", 250, "")
	c.expect("RCPT TO:<alice@percon.test>", 452, "4.5.3")
	c.expect("QUIT", 221, "")
	c = dialSMTP(t, s, "127.0.3.5")
	c.ehlo()
	c.expect("MAIL FROM:<>", 250, "")
	c.expect("RCPT TO:<alice@percon.test>", 250, "")
}

func TestRefuseAllAfterUnknown(t *testing.T) {
	t.Parallel()
	s := startSim(t, oneHostWorld("harvest", "127.0.3.6", Host{RefuseAllAfterUnknown: 2}))
	c := dialSMTP(t, s, "127.0.3.6")
	c.ehlo()
	c.expect("MAIL FROM:<>", 250, "")
	c.expect("RCPT TO:<alice@harvest.test>", 250, "")
	c.expect("RCPT TO:<no1@harvest.test>", 550, "5.1.1")
	c.expect("RCPT TO:<no2@harvest.test>", 550, "5.1.1")
	for _, rcpt := range []string{"alice", "postmaster", "no3"} {
		c.expect("RCPT TO:<"+rcpt+"@harvest.test>", 550, "#5.1.0 Address rejected")
	}
	// A new connection starts with a clean slate.
	c = dialSMTP(t, s, "127.0.3.6")
	c.ehlo()
	c.expect("MAIL FROM:<>", 250, "")
	c.expect("RCPT TO:<postmaster@harvest.test>", 250, "")
}

func TestUnknownReply(t *testing.T) {
	t.Parallel()
	w := oneHostWorld("defer", "127.0.3.7", Host{})
	w.Domains[0].UnknownReply = &Reply{Code: 450, Enhanced: "4.1.1", Message: "Recipient address rejected: unverified address"}
	s := startSim(t, w)
	c := dialSMTP(t, s, "127.0.3.7")
	c.ehlo()
	c.expect("MAIL FROM:<>", 250, "")
	c.expect("RCPT TO:<alice@defer.test>", 250, "")
	c.expect("RCPT TO:<nobody@defer.test>", 450, "4.1.1 Recipient address rejected")
}
