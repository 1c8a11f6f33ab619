package finder

import (
	"cmp"
	"slices"

	"github.com/bulkverify/bulkverify/output"
)

// Confidence of a Decision.
const (
	ConfidenceHigh   = "high"   // the only candidate the server accepted, all others refused
	ConfidenceMedium = "medium" // accepted, but another candidate was accepted too or not settled
	ConfidenceLow    = "low"    // a guess: the domain accepts every address
)

// Reasons of a Decision. A Decision that rests on a temporary failure carries
// the probe's own reason instead (e.g. "greylisted", "timeout").
const (
	ReasonFound        = "found"         // one candidate accepted
	ReasonAmbiguous    = "ambiguous"     // several candidates accepted
	ReasonAcceptAll    = "accept_all"    // the domain accepts every address; Email is a guess
	ReasonNotFound     = "not_found"     // every candidate refused
	ReasonNoCandidates = "no_candidates" // no name, or a name that cannot be folded to ASCII
	ReasonNotProbed    = "not_probed"    // an unsettled candidate came with no reason
)

// Outcome is the probe result of one candidate.
type Outcome struct {
	Candidate Candidate
	Status    string // output.Status* for Candidate.Address; "" if it was not probed
	Reason    string // the probe's reason word, e.g. "accepted", "mailbox_unknown", "greylisted"
}

// Decision is the answer for one person.
type Decision struct {
	Email        string   // "" when nothing was found
	Confidence   string   // Confidence* or "" when Email is ""
	Status       string   // output.Status*
	Reason       string   // Reason*, or the reason of the outcome it rests on
	Pattern      string   // the pattern name of Email
	Alternatives []string // other accepted candidates, most common pattern first
	Basis        int      // index in the outcomes of the outcome this decision rests on; -1 if none
}

// Decide chooses the answer for one person from the probe outcomes of their
// candidates. catchAll is the domain's accept-all check: true when it
// accepts every address, false when it does not, nil when the check was
// inconclusive. domainPattern is the domain's learned pattern (see
// LearnDomainPattern), or "".
//
// The outcomes fall into three groups: accepted (deliverable, or risky such as
// a full mailbox: the server says the mailbox exists), refused (undeliverable
// or invalid), and unsettled (unknown: greylisting, timeouts, policy blocks;
// or not probed). "Most common" means the lowest Candidate.Rank, and among
// equal ranks the earlier outcome.
//
//   - No outcomes: invalid / no_candidates.
//   - The domain accepts every address (*catchAll): the candidate whose
//     pattern is domainPattern, else the most common one, with confidence
//     low, status risky, reason accept_all, and no alternatives. Only refused
//     candidates are passed over, so the caller need not probe candidates at
//     such a domain; if all were refused, the rules below apply.
//   - Exactly one accepted, and every other candidate refused: that address,
//     confidence high, reason found. When catchAll is nil this also needs at
//     least one refusal, as the only evidence that the domain does not
//     accept everything.
//   - Exactly one accepted, but others unsettled (or catchAll nil and nothing
//     refused): that address, confidence medium, reason found — an unsettled
//     candidate might have been accepted too.
//   - Several accepted: the most common, confidence medium, reason ambiguous,
//     the others in Alternatives. domainPattern is not used here: every
//     accepted address reaches a mailbox.
//   - None accepted, some unsettled: no address, status unknown, the reason of
//     the most common unsettled outcome — the person may still be found.
//   - None accepted, all refused: no address, undeliverable / not_found; but
//     when every outcome is invalid (the domain does not exist, null MX…),
//     invalid with the reason of the most common one.
func Decide(outcomes []Outcome, catchAll *bool, domainPattern string) Decision {
	if len(outcomes) == 0 {
		return Decision{Status: output.StatusInvalid, Reason: ReasonNoCandidates, Basis: -1}
	}

	order := byRank(outcomes)
	var accepted, refused, unsettled []int // indexes, most common first
	invalid := 0
	for _, i := range order {
		switch outcomes[i].Status {
		case output.StatusDeliverable, output.StatusRisky:
			accepted = append(accepted, i)
		case output.StatusUndeliverable:
			refused = append(refused, i)
		case output.StatusInvalid:
			refused = append(refused, i)
			invalid++
		default:
			unsettled = append(unsettled, i)
		}
	}

	if catchAll != nil && *catchAll && len(refused) < len(outcomes) {
		pick := -1
		for _, i := range order {
			if isRefused(outcomes[i].Status) {
				continue
			}
			if pick < 0 {
				pick = i
			}
			if domainPattern != "" && outcomes[i].Candidate.Pattern == domainPattern {
				pick = i
				break
			}
		}
		c := outcomes[pick].Candidate
		return Decision{Email: c.Address, Confidence: ConfidenceLow, Status: output.StatusRisky,
			Reason: ReasonAcceptAll, Pattern: c.Pattern, Basis: pick}
	}

	switch {
	case len(accepted) == 1:
		i := accepted[0]
		d := Decision{Email: outcomes[i].Candidate.Address, Confidence: ConfidenceMedium,
			Status: outcomes[i].Status, Reason: ReasonFound, Pattern: outcomes[i].Candidate.Pattern, Basis: i}
		if len(unsettled) == 0 && (catchAll != nil || len(refused) > 0) {
			d.Confidence = ConfidenceHigh
		}
		return d
	case len(accepted) > 1:
		i := accepted[0]
		d := Decision{Email: outcomes[i].Candidate.Address, Confidence: ConfidenceMedium,
			Status: outcomes[i].Status, Reason: ReasonAmbiguous, Pattern: outcomes[i].Candidate.Pattern, Basis: i}
		for _, j := range accepted[1:] {
			d.Alternatives = append(d.Alternatives, outcomes[j].Candidate.Address)
		}
		return d
	case len(unsettled) > 0:
		i := unsettled[0]
		reason := outcomes[i].Reason
		if reason == "" {
			reason = ReasonNotProbed
		}
		return Decision{Status: output.StatusUnknown, Reason: reason, Basis: i}
	case invalid == len(outcomes):
		i := refused[0]
		return Decision{Status: output.StatusInvalid, Reason: outcomes[i].Reason, Basis: i}
	default:
		return Decision{Status: output.StatusUndeliverable, Reason: ReasonNotFound, Basis: refused[0]}
	}
}

func isRefused(status string) bool {
	return status == output.StatusUndeliverable || status == output.StatusInvalid
}

// byRank returns the indexes of outcomes ordered by Candidate.Rank, keeping
// the given order among equal ranks.
func byRank(outcomes []Outcome) []int {
	idx := make([]int, len(outcomes))
	for i := range idx {
		idx[i] = i
	}
	slices.SortStableFunc(idx, func(a, b int) int {
		return cmp.Compare(outcomes[a].Candidate.Rank, outcomes[b].Candidate.Rank)
	})
	return idx
}

// LearnDomainPattern finds the pattern a domain uses from the decisions for
// its people: the pattern of at least two high-confidence finds that are also
// more than half of all high-confidence finds. Other decisions are ignored.
// One find is not enough (a person's address can be an exception, and some
// patterns coincide for some names), and with no majority — two finds with
// two patterns — nothing is learned.
func LearnDomainPattern(decisions []Decision) (pattern string, ok bool) {
	counts := make(map[string]int)
	total := 0
	for _, d := range decisions {
		if d.Confidence == ConfidenceHigh && d.Pattern != "" {
			counts[d.Pattern]++
			total++
		}
	}
	for p, n := range counts {
		if n >= 2 && 2*n > total {
			return p, true // a strict majority is unique
		}
	}
	return "", false
}
