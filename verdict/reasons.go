package verdict

import (
	"slices"

	"github.com/bulkverify/bulkverify/output"
)

// Reasons written in the reason column: one vocabulary for every package.
// They are part of the output format; README lists them.
//
// The reasons from ReasonAccepted to ReasonProviderAcceptsAll are the ones a
// server's reply can mean, and the only ones a rule may give (see
// ReplyReasons); the rest are decided without a reply (DNS, connections,
// input rows, checks across replies).
const (
	// ReasonAccepted: the server accepted the mailbox (2xx to RCPT).
	ReasonAccepted = "accepted"
	// ReasonMailboxUnknown: the server said the mailbox does not exist.
	ReasonMailboxUnknown = "mailbox_unknown"
	// ReasonMailboxDisabled: the mailbox exists but is disabled, inactive
	// or frozen and takes no mail.
	ReasonMailboxDisabled = "mailbox_disabled"
	// ReasonMailboxFull: the mailbox exists and is over its quota.
	ReasonMailboxFull = "mailbox_full"
	// ReasonPolicyBlock: the server refused us, not the mailbox: our
	// address or network on a blocklist (Decision.Detail names the list
	// when the text does), our reputation, our HELO, its local policy.
	ReasonPolicyBlock = "policy_block"
	// ReasonRateLimited: the server asks us to slow down (too many
	// connections, messages or recipients for now); back off.
	ReasonRateLimited = "rate_limited"
	// ReasonGreylisted: a temporary refusal meant to be retried later, after
	// which the server answers for real.
	ReasonGreylisted = "greylisted"
	// ReasonTooManyRecipients: the transaction reached the server's
	// recipient limit; this recipient was not judged. Ask again in a new
	// transaction.
	ReasonTooManyRecipients = "too_many_recipients"
	// ReasonSenderRejected: the refusal is about our MAIL FROM (sender
	// verification, SPF/DMARC, a bad sender domain), not the mailbox.
	ReasonSenderRejected = "sender_rejected"
	// ReasonRelayDenied: the server does not take mail for the recipient's
	// domain (relaying denied, domain not served here): it says nothing
	// about the mailbox, and nothing against our address.
	ReasonRelayDenied = "relay_denied"
	// ReasonRoutingError: the server could not route the recipient onward
	// (unroutable, loop, no answer from the next host).
	ReasonRoutingError = "routing_error"
	// ReasonTemporary: another temporary failure (4xx) of the server.
	ReasonTemporary = "temporary_failure"
	// ReasonRejected: a refusal the table cannot read, or an answer that
	// neither accepts nor refuses (252): the honest verdict is unknown.
	ReasonRejected = "rejected"
	// ReasonProviderAcceptsAll: accepted by an operator known to accept
	// every recipient at RCPT and to bounce the unknown ones later: the
	// acceptance proves nothing.
	ReasonProviderAcceptsAll = "provider_accepts_all"

	ReasonSMTPUTF8         = "smtputf8_unsupported"
	ReasonNullMX           = "null_mx"
	ReasonNXDomain         = "nxdomain"
	ReasonNoMailHost       = "no_mail_host"
	ReasonDNSError         = "dns_error"
	ReasonMXUnresolvable   = "mx_unresolvable"
	ReasonConnectionFailed = "connection_failed"
	ReasonConnectionLost   = "connection_lost"
	ReasonTimeout          = "timeout"
	ReasonProtocolError    = "protocol_error"
	ReasonTLSUnavailable   = "tls_unavailable"
	ReasonAcceptAll        = "accept_all"
	ReasonUncheckedMX      = "unchecked_mx"
	ReasonRaggedRow        = "ragged_row"
	// ReasonRefusesAll: the server refused this address and postmaster@ its
	// domain alike, twice: it refuses everything, so the refusal says
	// nothing about the mailbox.
	ReasonRefusesAll = "refuses_all"
	// ReasonProxyFailed: the SOCKS5 proxy the connection went through
	// failed (refused us, our credentials, or its own request), so the mail
	// server was never reached.
	ReasonProxyFailed = "proxy_failed"
	// ReasonSkipped: the domain or its operator is on the do-not-probe
	// list: nothing was asked.
	ReasonSkipped = "skipped"
	// ReasonWorkerFailed: in a cluster, every worker that took the
	// address's unit failed before answering it (max deliveries reached).
	ReasonWorkerFailed = "worker_failed"
	// ReasonTypoDomain: the domain is a known typo of a big provider's
	// (gmial.com); typosquatters often accept everything there.
	ReasonTypoDomain = "typo_domain"
)

// replyReasons maps each reason a reply can mean to the status it gives
// when a rule names no status of its own.
var replyReasons = map[string]string{
	ReasonAccepted:           output.StatusDeliverable,
	ReasonMailboxUnknown:     output.StatusUndeliverable,
	ReasonMailboxDisabled:    output.StatusUndeliverable,
	ReasonMailboxFull:        output.StatusRisky,
	ReasonPolicyBlock:        output.StatusUnknown,
	ReasonRateLimited:        output.StatusUnknown,
	ReasonGreylisted:         output.StatusUnknown,
	ReasonTooManyRecipients:  output.StatusUnknown,
	ReasonSenderRejected:     output.StatusUnknown,
	ReasonRelayDenied:        output.StatusUnknown,
	ReasonRoutingError:       output.StatusUnknown,
	ReasonTemporary:          output.StatusUnknown,
	ReasonRejected:           output.StatusUnknown,
	ReasonProviderAcceptsAll: output.StatusRisky,
}

// ReplyReasons returns, sorted, the reasons a reply can mean: those a rule
// may give.
func ReplyReasons() []string {
	out := make([]string, 0, len(replyReasons))
	for r := range replyReasons {
		out = append(out, r)
	}
	slices.Sort(out)
	return out
}

// DefaultStatus returns the status a reply reason gives when a rule names
// none, and false for a reason no reply can mean.
func DefaultStatus(reason string) (string, bool) {
	s, ok := replyReasons[reason]
	return s, ok
}

// statuses a rule may name.
var statuses = []string{output.StatusDeliverable, output.StatusUndeliverable, output.StatusRisky, output.StatusUnknown}

// Stage is the SMTP command a reply answers.
type Stage string

// The stages bulkverify reads replies at. It never sends DATA.
const (
	StageBanner Stage = "banner" // the greeting on connect
	StageEHLO   Stage = "ehlo"   // EHLO or HELO
	StageMail   Stage = "mail"   // MAIL FROM
	StageRcpt   Stage = "rcpt"   // RCPT TO
)

// Stages returns every stage, in session order.
func Stages() []Stage { return []Stage{StageBanner, StageEHLO, StageMail, StageRcpt} }

func validStage(s Stage) bool { return slices.Contains(Stages(), s) }

// StageOfCommand maps the command name a probe.ReplyError carries
// ("banner", "EHLO", "HELO", "STARTTLS", "MAIL", and "RCPT") to its stage.
// STARTTLS belongs to the greeting exchange, so it reads as EHLO.
func StageOfCommand(command string) (Stage, bool) {
	switch command {
	case "banner":
		return StageBanner, true
	case "EHLO", "HELO", "STARTTLS":
		return StageEHLO, true
	case "MAIL":
		return StageMail, true
	case "RCPT":
		return StageRcpt, true
	}
	return "", false
}
