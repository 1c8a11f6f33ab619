package pipeline

import (
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
	ReasonRefusesAll       = verdict.ReasonRefusesAll
)

// Classify maps one RCPT reply to a status and reason by the built-in reply
// table (verdict.Default, stage RCPT, operator not known). A run reads
// replies with Config.Replies, at their stage and with the operator of the
// host that answered.
func Classify(r probe.Reply) (status, reason string) {
	d := verdict.Default().Classify(verdict.Input{Reply: r, Stage: verdict.StageRcpt})
	return d.Status, d.Reason
}
