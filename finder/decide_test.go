package finder

import (
	"slices"
	"testing"

	"github.com/bulkverify/bulkverify/output"
)

func TestDecide(t *testing.T) {
	yes, no := true, false
	const (
		ok      = output.StatusDeliverable
		gone    = output.StatusUndeliverable
		unknown = output.StatusUnknown
	)
	// Three candidates of Ada Lovelace in rank order, as Candidates makes them.
	dot, flast, first := c("ada.lovelace", "first.last", 0), c("alovelace", "flast", 1), c("ada", "first", 2)
	o := func(cand Candidate, status, reason string) Outcome {
		return Outcome{Candidate: cand, Status: status, Reason: reason}
	}
	tests := []struct {
		name          string
		outcomes      []Outcome
		catchAll      *bool
		domainPattern string
		want          Decision
	}{
		{
			name:     "exactly one accepted",
			outcomes: []Outcome{o(dot, gone, "mailbox_unknown"), o(flast, ok, "accepted"), o(first, gone, "mailbox_unknown")},
			catchAll: &no,
			want:     Decision{Email: "alovelace@acme.test", Confidence: ConfidenceHigh, Status: ok, Reason: ReasonFound, Pattern: "flast", Basis: 1},
		},
		{
			name:     "exactly one accepted, catch-all check inconclusive: the refusals are the evidence",
			outcomes: []Outcome{o(dot, gone, "mailbox_unknown"), o(flast, ok, "accepted")},
			want:     Decision{Email: "alovelace@acme.test", Confidence: ConfidenceHigh, Status: ok, Reason: ReasonFound, Pattern: "flast", Basis: 1},
		},
		{
			name:     "only candidate accepted, domain known not to accept all",
			outcomes: []Outcome{o(first, ok, "accepted")},
			catchAll: &no,
			want:     Decision{Email: "ada@acme.test", Confidence: ConfidenceHigh, Status: ok, Reason: ReasonFound, Pattern: "first", Basis: 0},
		},
		{
			name:     "only candidate accepted, catch-all check inconclusive",
			outcomes: []Outcome{o(first, ok, "accepted")},
			want:     Decision{Email: "ada@acme.test", Confidence: ConfidenceMedium, Status: ok, Reason: ReasonFound, Pattern: "first", Basis: 0},
		},
		{
			name:     "one accepted, another greylisted",
			outcomes: []Outcome{o(dot, unknown, "greylisted"), o(flast, ok, "accepted"), o(first, gone, "mailbox_unknown")},
			catchAll: &no,
			want:     Decision{Email: "alovelace@acme.test", Confidence: ConfidenceMedium, Status: ok, Reason: ReasonFound, Pattern: "flast", Basis: 1},
		},
		{
			name:     "one full mailbox counts as found",
			outcomes: []Outcome{o(dot, output.StatusRisky, "mailbox_full"), o(flast, gone, "mailbox_unknown")},
			catchAll: &no,
			want:     Decision{Email: "ada.lovelace@acme.test", Confidence: ConfidenceHigh, Status: output.StatusRisky, Reason: ReasonFound, Pattern: "first.last", Basis: 0},
		},
		{
			name:          "two accepted: most common pattern first, given in any order",
			outcomes:      []Outcome{o(first, ok, "accepted"), o(flast, gone, "mailbox_unknown"), o(dot, ok, "accepted")},
			catchAll:      &no,
			domainPattern: "first", // not used when the domain does not accept all
			want: Decision{Email: "ada.lovelace@acme.test", Confidence: ConfidenceMedium, Status: ok, Reason: ReasonAmbiguous,
				Pattern: "first.last", Alternatives: []string{"ada@acme.test"}, Basis: 2},
		},
		{
			name:     "equal ranks (German spelling): the earlier outcome first",
			outcomes: []Outcome{o(c("jurgen", "first", 2), ok, "accepted"), o(c("juergen", "first", 2), ok, "accepted")},
			catchAll: &no,
			want: Decision{Email: "jurgen@acme.test", Confidence: ConfidenceMedium, Status: ok, Reason: ReasonAmbiguous,
				Pattern: "first", Alternatives: []string{"juergen@acme.test"}, Basis: 0},
		},
		{
			name:     "accept-all, no learned pattern: most common, candidates need not be probed",
			outcomes: []Outcome{o(flast, "", ""), o(dot, "", ""), o(first, "", "")},
			catchAll: &yes,
			want:     Decision{Email: "ada.lovelace@acme.test", Confidence: ConfidenceLow, Status: output.StatusRisky, Reason: ReasonAcceptAll, Pattern: "first.last", Basis: 1},
		},
		{
			name:          "accept-all with the domain's learned pattern",
			outcomes:      []Outcome{o(dot, output.StatusRisky, "accept_all"), o(flast, output.StatusRisky, "accept_all"), o(first, output.StatusRisky, "accept_all")},
			catchAll:      &yes,
			domainPattern: "flast",
			want:          Decision{Email: "alovelace@acme.test", Confidence: ConfidenceLow, Status: output.StatusRisky, Reason: ReasonAcceptAll, Pattern: "flast", Basis: 1},
		},
		{
			name:          "accept-all, learned pattern gave this person no candidate",
			outcomes:      []Outcome{o(dot, "", ""), o(first, "", "")},
			catchAll:      &yes,
			domainPattern: "flast",
			want:          Decision{Email: "ada.lovelace@acme.test", Confidence: ConfidenceLow, Status: output.StatusRisky, Reason: ReasonAcceptAll, Pattern: "first.last", Basis: 0},
		},
		{
			name:     "accept-all, a refused candidate is passed over",
			outcomes: []Outcome{o(dot, gone, "mailbox_unknown"), o(flast, output.StatusRisky, "accept_all")},
			catchAll: &yes,
			want:     Decision{Email: "alovelace@acme.test", Confidence: ConfidenceLow, Status: output.StatusRisky, Reason: ReasonAcceptAll, Pattern: "flast", Basis: 1},
		},
		{
			name:     "accept-all, every candidate refused",
			outcomes: []Outcome{o(dot, gone, "mailbox_unknown"), o(flast, gone, "mailbox_unknown")},
			catchAll: &yes,
			want:     Decision{Status: gone, Reason: ReasonNotFound, Basis: 0},
		},
		{
			name:     "none accepted",
			outcomes: []Outcome{o(flast, gone, "mailbox_unknown"), o(dot, gone, "mailbox_disabled")},
			catchAll: &no,
			want:     Decision{Status: gone, Reason: ReasonNotFound, Basis: 1},
		},
		{
			name:     "temporary failure",
			outcomes: []Outcome{o(dot, unknown, "greylisted"), o(flast, unknown, "greylisted")},
			want:     Decision{Status: unknown, Reason: "greylisted", Basis: 0},
		},
		{
			name:     "refusals and one timeout: still unknown, with the timeout",
			outcomes: []Outcome{o(dot, gone, "mailbox_unknown"), o(flast, unknown, "timeout"), o(first, gone, "mailbox_unknown")},
			catchAll: &no,
			want:     Decision{Status: unknown, Reason: "timeout", Basis: 1},
		},
		{
			name:     "unsettled without a reason",
			outcomes: []Outcome{o(dot, "", "")},
			want:     Decision{Status: unknown, Reason: ReasonNotProbed, Basis: 0},
		},
		{
			name:     "domain that does not exist",
			outcomes: []Outcome{o(flast, output.StatusInvalid, "nxdomain"), o(dot, output.StatusInvalid, "nxdomain")},
			want:     Decision{Status: output.StatusInvalid, Reason: "nxdomain", Basis: 1},
		},
		{
			name: "no candidates",
			want: Decision{Status: output.StatusInvalid, Reason: ReasonNoCandidates, Basis: -1},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Decide(tt.outcomes, tt.catchAll, tt.domainPattern)
			if got.Email != tt.want.Email || got.Confidence != tt.want.Confidence || got.Status != tt.want.Status ||
				got.Reason != tt.want.Reason || got.Pattern != tt.want.Pattern || got.Basis != tt.want.Basis ||
				!slices.Equal(got.Alternatives, tt.want.Alternatives) {
				t.Errorf("Decide =\n %+v\nwant\n %+v", got, tt.want)
			}
		})
	}
}

func TestLearnDomainPattern(t *testing.T) {
	found := func(conf, pattern string) Decision {
		return Decision{Email: "x@acme.test", Confidence: conf, Status: output.StatusDeliverable, Reason: ReasonFound, Pattern: pattern}
	}
	high, medium, low := ConfidenceHigh, ConfidenceMedium, ConfidenceLow
	tests := []struct {
		name      string
		decisions []Decision
		want      string // "" for nothing learned
	}{
		{name: "two people sharing flast", decisions: []Decision{found(high, "flast"), found(high, "flast")}, want: "flast"},
		{name: "two people disagreeing", decisions: []Decision{found(high, "flast"), found(high, "first.last")}},
		{name: "one person is not enough", decisions: []Decision{found(high, "flast")}},
		{name: "majority of three", decisions: []Decision{found(high, "flast"), found(high, "first.last"), found(high, "flast")}, want: "flast"},
		{name: "two of four is no majority", decisions: []Decision{found(high, "flast"), found(high, "flast"), found(high, "first"), found(high, "last")}},
		{
			name: "medium and low confidence are ignored",
			decisions: []Decision{found(high, "flast"), found(medium, "first.last"), found(medium, "first.last"),
				found(low, "first.last"), found(high, "flast"), {Status: output.StatusUndeliverable, Reason: ReasonNotFound}},
			want: "flast",
		},
		{name: "mediums alone teach nothing", decisions: []Decision{found(medium, "flast"), found(medium, "flast")}},
		{name: "none", decisions: nil},
	}
	for _, tt := range tests {
		got, ok := LearnDomainPattern(tt.decisions)
		if got != tt.want || ok != (tt.want != "") {
			t.Errorf("%s: LearnDomainPattern = %q, %v; want %q", tt.name, got, ok, tt.want)
		}
	}
}
