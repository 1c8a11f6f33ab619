package cluster

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestSplitUnit(t *testing.T) {
	u := makeUnits("j", 1, 5000, plainLocal)[0]
	parts, err := SplitUnit(u, 2000)
	if err != nil {
		t.Fatal(err)
	}
	if len(parts) != 3 || len(parts[0].Addresses) != 2000 || len(parts[2].Addresses) != 1000 || parts[1].ID != "u0-2" {
		t.Fatalf("parts: %d, ids %s...", len(parts), parts[0].ID)
	}
	// Addresses too long for 2,000 to fit in MaxUnitBytes: cut smaller.
	long := makeUnits("j", 1, 2000, func(k uint64) string { return fmt.Sprintf("%s%d", strings.Repeat("x", 300), k) })[0]
	parts, err = SplitUnit(long, 2000)
	if err != nil {
		t.Fatal(err)
	}
	total := 0
	for _, p := range parts {
		data, err := encodeUnit(p)
		if err != nil || len(data) > MaxUnitBytes {
			t.Fatalf("part %s: %d bytes, %v", p.ID, len(data), err)
		}
		total += len(p.Addresses)
	}
	if len(parts) < 2 || total != 2000 {
		t.Fatalf("%d parts holding %d addresses", len(parts), total)
	}
	small := makeUnits("j", 1, 3, plainLocal)[0]
	if parts, _ := SplitUnit(small, 0); len(parts) != 1 || parts[0].ID != "u0" {
		t.Fatalf("a small unit was cut: %+v", parts)
	}
}

func TestUnitCheck(t *testing.T) {
	good := makeUnits("job", 1, 2, plainLocal)[0]
	for _, tc := range []struct {
		name   string
		change func(*Unit)
		err    error
	}{
		{"ok", func(*Unit) {}, nil},
		{"job with a dot", func(u *Unit) { u.Job = "a.b" }, ErrBadID},
		{"unit with a wildcard", func(u *Unit) { u.ID = "*" }, ErrBadID},
		{"empty", func(u *Unit) { u.Addresses = nil }, ErrBadUnit},
		{"key twice", func(u *Unit) { u.Addresses[1].Key = u.Addresses[0].Key }, ErrBadUnit},
	} {
		u := good
		u.Addresses = append([]Address(nil), good.Addresses...)
		tc.change(&u)
		if err := u.Check(); !errors.Is(err, tc.err) && !(err == nil && tc.err == nil) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.err)
		}
	}
}

// A batch of results reads back as it was written.
func TestResultsRoundTrip(t *testing.T) {
	yes, no := true, false
	at := time.Date(2026, 5, 1, 12, 0, 0, 123, time.UTC)
	in := resultMsg{Version: WireVersion, UnitSize: 7, Host: "mx.example", Results: []Result{
		{Job: "j1", Unit: "u1", Key: 1, Status: "deliverable", Reason: "accepted", SMTPCode: 250, EnhancedCode: "2.1.5",
			Message: "OK ünïcode", MXHost: "mx.example", CatchAll: &no, TLS: &yes, Egress: "127.0.0.5", Provider: "google",
			Attempts: 2, CheckedAt: at},
		{Job: "j1", Unit: "u1", Key: 1 << 40, Status: "unknown", Reason: "worker_failed"},
	}}
	out, err := decodeResult(encodeResults(in))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(in, out) {
		t.Fatalf("round trip:\n%+v\n%+v", in, out)
	}
	if _, err := decodeResult([]byte(`{"v":1}`)); !errors.Is(err, ErrBadUnit) {
		t.Errorf("JSON read as results: %v", err)
	}
}

func TestKeyToken(t *testing.T) {
	for _, name := range []string{"microsoft", "mx.example.com", "bücher.example", "a..b", ".x", "=x", "a b", "", strings.Repeat("a", 300)} {
		tok := keyToken(name)
		if !plainToken.MatchString(strings.TrimPrefix(tok, "=")) && tok != "=" {
			t.Errorf("keyToken(%q) = %q is not a key token", name, tok)
		}
		if tokenName(tok) != name {
			t.Errorf("tokenName(keyToken(%q)) = %q", name, tokenName(tok))
		}
	}
}

// Unit and result messages from the wire never panic the reader.
func FuzzDecode(f *testing.F) {
	data, _ := encodeUnit(makeUnits("j", 1, 2, plainLocal)[0])
	f.Add(data)
	f.Add([]byte(`{"v":1,"job":"j","unit":"u","addresses":[{"k":1,"l":"a","d":"b"}]}`))
	yes := true
	f.Add(encodeResults(resultMsg{Version: WireVersion, UnitSize: 2, Host: "mx.example", Results: []Result{
		{Job: "j", Unit: "u", Key: 3, Status: "deliverable", Reason: "accepted", SMTPCode: 250, CatchAll: &yes}}}))
	f.Fuzz(func(t *testing.T, data []byte) {
		if u, err := decodeUnit(data); err == nil {
			if err := u.Check(); err != nil {
				t.Fatalf("decoded a unit that fails Check: %v", err)
			}
		}
		_, _ = decodeResult(data)
	})
}
