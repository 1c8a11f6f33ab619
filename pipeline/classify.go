package pipeline

import (
	"strings"

	"github.com/bulkverify/bulkverify/probe"
	"github.com/bulkverify/bulkverify/verdict"
)

// Reasons written in the reason column. The vocabulary is verdict's; these
// names remain so that code written against them keeps compiling.
const (
	ReasonAccepted         = verdict.ReasonAccepted
	ReasonMailboxUnknown   = verdict.ReasonMailboxUnknown
	ReasonMailboxFull      = verdict.ReasonMailboxFull
	ReasonMailboxDisabled  = verdict.ReasonMailboxDisabled
	ReasonPolicyBlock      = verdict.ReasonPolicyBlock
	ReasonGreylisted       = verdict.ReasonGreylisted
	ReasonTemporary        = verdict.ReasonTemporary
	ReasonRejected         = verdict.ReasonRejected
	ReasonSenderRejected   = verdict.ReasonSenderRejected
	ReasonSMTPUTF8         = verdict.ReasonSMTPUTF8
	ReasonNullMX           = verdict.ReasonNullMX
	ReasonNXDomain         = verdict.ReasonNXDomain
	ReasonNoMailHost       = verdict.ReasonNoMailHost
	ReasonDNSError         = verdict.ReasonDNSError
	ReasonMXUnresolvable   = verdict.ReasonMXUnresolvable
	ReasonConnectionFailed = verdict.ReasonConnectionFailed
	ReasonConnectionLost   = verdict.ReasonConnectionLost
	ReasonTimeout          = verdict.ReasonTimeout
	ReasonProtocolError    = verdict.ReasonProtocolError
	ReasonTLSUnavailable   = verdict.ReasonTLSUnavailable
	ReasonAcceptAll        = verdict.ReasonAcceptAll
	ReasonUncheckedMX      = verdict.ReasonUncheckedMX
	ReasonRaggedRow        = verdict.ReasonRaggedRow
)

// Classify maps one RCPT reply to a status and reason by the built-in reply
// table (verdict.Default, stage RCPT, operator not known).
//
// It keeps the reasons its callers were written for: the reasons the table
// has that those callers do not branch on yet (relay_denied, rate_limited,
// too_many_recipients, routing_error) are reported as the reason this
// function gave them before the table existed. Callers that know the
// table's reasons call verdict.Table.Classify directly.
func Classify(r probe.Reply) (status, reason string) {
	d := verdict.Default().Classify(verdict.Input{Reply: r, Stage: verdict.StageRcpt})
	return d.Status, earlierReason(d.Reason, r)
}

// earlierReason folds the table's finer reasons into the ones Classify gave
// before: a refusal with an x.7.x code was a policy block, another 4xx a
// temporary failure, anything else a plain rejection.
func earlierReason(reason string, r probe.Reply) string {
	switch reason {
	case verdict.ReasonRelayDenied:
		return ReasonPolicyBlock
	case verdict.ReasonRateLimited, verdict.ReasonTooManyRecipients, verdict.ReasonRoutingError:
		switch {
		case strings.HasPrefix(r.Enhanced, "5.7.") || strings.HasPrefix(r.Enhanced, "4.7."):
			return ReasonPolicyBlock
		case r.Transient():
			return ReasonTemporary
		}
		return ReasonRejected
	}
	return reason
}
