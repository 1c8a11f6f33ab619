package pipeline

import (
	"strings"

	"github.com/bulkverify/bulkverify/output"
	"github.com/bulkverify/bulkverify/probe"
)

// Reasons written in the reason column. They are part of the output format.
const (
	ReasonAccepted         = "accepted"
	ReasonMailboxUnknown   = "mailbox_unknown"
	ReasonMailboxFull      = "mailbox_full"
	ReasonMailboxDisabled  = "mailbox_disabled"
	ReasonPolicyBlock      = "policy_block"
	ReasonGreylisted       = "greylisted"
	ReasonTemporary        = "temporary_failure"
	ReasonRejected         = "rejected"
	ReasonSenderRejected   = "sender_rejected"
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
	ReasonRefusesAll       = "refuses_all"
)

// Classify maps one RCPT reply to a status and reason. The rule is to claim
// "undeliverable" only when the server said the mailbox does not exist; a
// refusal that is about us (policy, reputation, rate) says nothing about the
// mailbox and is reported as unknown.
func Classify(r probe.Reply) (status, reason string) {
	enh := r.Enhanced
	switch {
	case r.Code == 250 || r.Code == 251:
		return output.StatusDeliverable, ReasonAccepted
	case r.Positive():
		// 252 "cannot verify user, but will accept": honest answer is unknown.
		return output.StatusUnknown, ReasonRejected
	case enh == "5.2.2" || enh == "4.2.2" || r.Code == 552:
		return output.StatusRisky, ReasonMailboxFull
	case strings.HasPrefix(enh, "5.7.") || strings.HasPrefix(enh, "4.7."):
		if r.Transient() && looksGreylisted(r) {
			return output.StatusUnknown, ReasonGreylisted
		}
		return output.StatusUnknown, ReasonPolicyBlock
	case r.Transient():
		if looksGreylisted(r) {
			return output.StatusUnknown, ReasonGreylisted
		}
		return output.StatusUnknown, ReasonTemporary
	case enh == "5.1.7" || enh == "5.1.8":
		// About the sender address, not the recipient.
		return output.StatusUnknown, ReasonSenderRejected
	case strings.HasPrefix(enh, "5.1."):
		return output.StatusUndeliverable, ReasonMailboxUnknown
	case enh == "5.2.1":
		return output.StatusUndeliverable, ReasonMailboxDisabled
	case enh == "" && (r.Code == 550 || r.Code == 551 || r.Code == 553):
		if looksLikePolicy(r) {
			return output.StatusUnknown, ReasonPolicyBlock
		}
		return output.StatusUndeliverable, ReasonMailboxUnknown
	case r.Code == 554:
		return output.StatusUnknown, ReasonPolicyBlock
	default:
		return output.StatusUnknown, ReasonRejected
	}
}

func looksGreylisted(r probe.Reply) bool {
	t := strings.ToLower(r.Text())
	return strings.Contains(t, "greylist") || strings.Contains(t, "graylist") ||
		strings.Contains(t, "try again later") || strings.Contains(t, "please retry")
}

// looksLikePolicy reads the text of servers that send no enhanced code: these
// words mean the refusal is about the client, not the mailbox.
func looksLikePolicy(r probe.Reply) bool {
	t := strings.ToLower(r.Text())
	for _, w := range [...]string{"spam", "block", "blacklist", "denied", "reputation",
		"policy", "not permitted", "relay", "rbl", "spamhaus", "abuse"} {
		if strings.Contains(t, w) {
			return true
		}
	}
	return false
}
