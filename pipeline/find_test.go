package pipeline

import (
	"bytes"
	"context"
	"encoding/csv"
	"fmt"
	"strings"
	"testing"

	"github.com/bulkverify/bulkverify/finder"
	"github.com/bulkverify/bulkverify/input"
	"github.com/bulkverify/bulkverify/mailsim"
	"github.com/bulkverify/bulkverify/output"
)

func findWorld() mailsim.World {
	mx := func(host string) []mailsim.MX { return []mailsim.MX{{Preference: 10, Host: host}} }
	return mailsim.World{
		Hosts: []mailsim.Host{
			{Name: "mx.dotted.test", IP: "127.0.0.51"},
			{Name: "mx.initial.test", IP: "127.0.0.52"},
			{Name: "mx.any.test", IP: "127.0.0.53"},
			{Name: "mx.twice.test", IP: "127.0.0.54"},
		},
		Domains: []mailsim.Domain{
			{Name: "dotted.test", MX: mx("mx.dotted.test"), Mailboxes: []string{"ada.lovelace", "jose.nunez", "grace.hopper"}},
			{Name: "initial.test", MX: mx("mx.initial.test"), Mailboxes: []string{"alovelace", "ghopper", "aturing"}},
			{Name: "any.test", MX: mx("mx.any.test"), CatchAll: true},
			{Name: "twice.test", MX: mx("mx.twice.test"), Mailboxes: []string{"ada.lovelace", "alovelace"}},
			{Name: "nomx.test"}, // neither MX nor A
		},
	}
}

// runFind runs find over csvText and returns the person rows and candidate rows.
func (h *harness) runFind(csvText string, fc FindConfig) ([]row, []row) {
	h.t.Helper()
	res := h.resolver()
	src, err := input.NewReader(strings.NewReader(csvText), input.Options{Names: FindDomainColumns()})
	if err != nil {
		h.t.Fatal(err)
	}
	var out, cands bytes.Buffer
	sink, err := output.NewCSVOf[output.FindResult](&out, src.Header())
	if err != nil {
		h.t.Fatal(err)
	}
	if fc.Candidates, err = output.NewCSVOf[output.CandidateResult](&cands, src.Header()); err != nil {
		h.t.Fatal(err)
	}
	if fc.Patterns == nil {
		fc.Patterns = finder.DefaultPatterns()
	}
	ctx, cancel := context.WithTimeout(context.Background(), runTimeout)
	defer cancel()
	if _, err := Find(ctx, h.cfg, fc, res, src, sink); err != nil {
		h.t.Fatalf("Find: %v", err)
	}
	if got := h.sim.TotalCommands("DATA"); got != 0 {
		h.t.Errorf("the servers saw DATA %d times", got)
	}
	return parseRows(h.t, &out), parseRows(h.t, &cands)
}

func parseRows(t *testing.T, b *bytes.Buffer) []row {
	t.Helper()
	records, err := csv.NewReader(b).ReadAll()
	if err != nil {
		t.Fatalf("output is not CSV: %v", err)
	}
	var rows []row
	for _, rec := range records[1:] {
		r := row{}
		for i, name := range records[0] {
			r[name] = rec[i]
		}
		rows = append(rows, r)
	}
	return rows
}

func TestFind(t *testing.T) {
	h := newHarness(t, findWorld())
	h.cfg.NoPositiveControl = true // counted: the candidates' own RCPTs (the control has tests of its own)
	people := "first_name,last_name,domain,id\n" +
		"Ada,Lovelace,dotted.test,p1\n" +
		"Grace,Hopper,https://www.dotted.test/team,p2\n" +
		"José,Núñez,dotted.test,p3\n" +
		"Ada,Lovelace,initial.test,p4\n" +
		"Grace,Hopper,initial.test,p5\n" +
		"Alan,Turing,initial.test,p6\n" +
		"Ada,Lovelace,any.test,p7\n" +
		"Ada,Lovelace,twice.test,p8\n" +
		"Ada,Lovelace,nomx.test,p9\n" +
		"Nobody,Here,dotted.test,p10\n" +
		",,dotted.test,p11\n" +
		"Ada,Lovelace,not a domain,p12\n"
	rows, cands := h.runFind(people, FindConfig{})
	checkEveryRowOnce(t, rows, 12)
	got := map[string]row{}
	for _, r := range rows {
		got[r["id"]] = r
	}
	tests := []struct {
		id, email, confidence, status, reason, pattern, domainPattern, alternatives string
	}{
		{"p1", "ada.lovelace@dotted.test", "high", "deliverable", "found", "first.last", "first.last", ""},
		{"p2", "grace.hopper@dotted.test", "high", "deliverable", "found", "first.last", "first.last", ""},
		{"p3", "jose.nunez@dotted.test", "high", "deliverable", "found", "first.last", "first.last", ""},
		{"p4", "alovelace@initial.test", "high", "deliverable", "found", "flast", "flast", ""},
		{"p5", "ghopper@initial.test", "high", "deliverable", "found", "flast", "flast", ""},
		{"p6", "aturing@initial.test", "high", "deliverable", "found", "flast", "flast", ""},
		{"p7", "ada.lovelace@any.test", "low", "risky", "accept_all", "first.last", "", ""},
		{"p8", "ada.lovelace@twice.test", "medium", "deliverable", "ambiguous", "first.last", "", "alovelace@twice.test"},
		{"p9", "", "", "invalid", "no_mail_host", "", "", ""},
		{"p10", "", "", "undeliverable", "not_found", "", "first.last", ""},
		{"p11", "", "", "invalid", "no_name", "", "", ""},
		{"p12", "", "", "invalid", "syntax", "", "", ""},
	}
	for _, tt := range tests {
		r := got[tt.id]
		if r["email"] != tt.email || r["confidence"] != tt.confidence || r["status"] != tt.status ||
			r["reason"] != tt.reason || r["pattern"] != tt.pattern || r["domain_pattern"] != tt.domainPattern ||
			r["alternatives"] != tt.alternatives {
			t.Errorf("%s: got %q %q %s/%s pattern=%q domain_pattern=%q alt=%q\nwant %q %q %s/%s pattern=%q domain_pattern=%q alt=%q",
				tt.id, r["email"], r["confidence"], r["status"], r["reason"], r["pattern"], r["domain_pattern"], r["alternatives"],
				tt.email, tt.confidence, tt.status, tt.reason, tt.pattern, tt.domainPattern, tt.alternatives)
		}
	}
	if r := got["p7"]; r["catch_all"] != "true" {
		t.Errorf("accept-all person: catch_all=%q", r["catch_all"])
	}
	// Candidate rows: one per candidate of every searched person, with its answer.
	perPerson := map[string]int{}
	for _, c := range cands {
		perPerson[c["id"]]++
		if c["candidate"] == "ada.lovelace@dotted.test" && c["status"] != "deliverable" {
			t.Errorf("candidate row: %v", c)
		}
	}
	if perPerson["p1"] == 0 || perPerson["p1"] != perPerson["p4"] || perPerson["p11"] != 0 {
		t.Errorf("candidate rows per person: %v", perPerson)
	}
	// One catch-all check per domain, not per person.
	if got, want := h.sim.Commands("mx.initial.test", "RCPT"), 1+3*perPerson["p4"]; got != want {
		t.Errorf("RCPT at initial.test = %d, want %d (3 people's candidates + 1 check)", got, want)
	}
}

// The learnt pattern is reported on every row of its domain, including the
// people it did not find. (Ranking accept-all guesses by it is Decide's,
// tested in finder: an accept-all domain cannot teach a pattern by probing.)
func TestFindReportsDomainPatternOnEveryRow(t *testing.T) {
	h := newHarness(t, findWorld())
	rows, _ := h.runFind("name,domain\nAda Lovelace,initial.test\nGrace Hopper,initial.test\nNobody Here,initial.test\n", FindConfig{TopK: 4})
	checkEveryRowOnce(t, rows, 3) // the loop below proves nothing about rows that are missing
	for _, r := range rows {
		if r["domain_pattern"] != "flast" {
			t.Errorf("%s %s: domain_pattern=%q", r["name"], r["email"], r["domain_pattern"])
		}
	}
}

func TestFind200PeopleOneConnection(t *testing.T) {
	h := newHarness(t, findWorld())
	h.cfg.MaxConnectionsPerHost = 1
	h.cfg.NoPositiveControl = true // counted: the candidates' own RCPTs (the control has tests of its own)
	var b strings.Builder
	b.WriteString("first_name,last_name,domain\n")
	for i := range 200 {
		fmt.Fprintf(&b, "Person%d,Surname%d,initial.test\n", i, i)
	}
	rows, cands := h.runFind(b.String(), FindConfig{TopK: 2})
	checkEveryRowOnce(t, rows, 200)
	if len(cands) != 400 {
		t.Errorf("%d candidate rows, want 400", len(cands))
	}
	if got := h.sim.Connections("mx.initial.test"); got != 1 {
		t.Errorf("200 people used %d connections, want 1", got)
	}
	if got := h.sim.Commands("mx.initial.test", "RCPT"); got != 401 {
		t.Errorf("RCPT = %d, want 400 candidates + 1 catch-all check", got)
	}
}
