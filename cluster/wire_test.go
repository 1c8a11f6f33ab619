package cluster

import (
	"errors"
	"fmt"
	"strings"
	"testing"
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
	f.Add([]byte(`{"v":1,"unit_size":2,"results":[{"k":3,"unit":"u","status":"deliverable"}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		if u, err := decodeUnit(data); err == nil {
			if err := u.Check(); err != nil {
				t.Fatalf("decoded a unit that fails Check: %v", err)
			}
		}
		_, _ = decodeResult(data)
	})
}
