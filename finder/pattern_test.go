package finder

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestParsePatterns(t *testing.T) {
	entry := func(name, template string) string {
		return "  - name: " + name + "\n    template: \"" + template + "\"\n"
	}
	tests := []struct {
		name    string
		file    string
		want    []Pattern // Name, Template, Join compared
		wantErr string
	}{
		{
			name: "valid",
			file: "patterns:\n" + entry("first.last", "{first}.{last}") + entry("flast", "{f}{last}") +
				"  - name: first.last/hyphen\n    template: \"{first}.{last}\"\n    join: \"-\"\n" +
				entry("x", "{first}.{m}.{middle}_{l}-9"),
			want: []Pattern{
				{Name: "first.last", Template: "{first}.{last}"},
				{Name: "flast", Template: "{f}{last}"},
				{Name: "first.last/hyphen", Template: "{first}.{last}", Join: "-"},
				{Name: "x", Template: "{first}.{m}.{middle}_{l}-9"},
			},
		},
		{name: "empty file", file: "", wantErr: "no patterns"},
		{name: "empty list", file: "patterns: []\n", wantErr: "no patterns"},
		{name: "not yaml", file: "patterns: [\n", wantErr: "yaml"},
		{name: "unknown top-level key", file: "pattern:\n" + entry("a", "{first}"), wantErr: "pattern"},
		{name: "unknown entry key", file: "patterns:\n  - name: a\n    templ: \"{first}\"\n", wantErr: "templ"},
		{name: "unknown placeholder", file: "patterns:\n" + entry("a", "{frist}"), wantErr: "unknown placeholder {frist}"},
		{name: "unterminated placeholder", file: "patterns:\n" + entry("a", "{first"), wantErr: "unterminated"},
		{name: "unmatched brace", file: "patterns:\n" + entry("a", "first}"), wantErr: "unmatched }"},
		{name: "upper-case literal", file: "patterns:\n" + entry("a", "{first}X"), wantErr: "'X' is not allowed"},
		{name: "plus literal", file: "patterns:\n" + entry("a", "{first}+news"), wantErr: "'+' is not allowed"},
		{name: "no placeholder", file: "patterns:\n" + entry("a", "info"), wantErr: "no placeholder"},
		{name: "empty template", file: "patterns:\n" + entry("a", ""), wantErr: "empty"},
		{name: "leading dot", file: "patterns:\n" + entry("a", ".{first}"), wantErr: "starts with a dot"},
		{name: "trailing dot", file: "patterns:\n" + entry("a", "{first}."), wantErr: "ends with a dot"},
		{name: "two dots", file: "patterns:\n" + entry("a", "{first}..{last}"), wantErr: "two dots"},
		{name: "bad join", file: "patterns:\n  - name: a\n    template: \"{first}\"\n    join: \"+\"\n", wantErr: "join"},
		{name: "empty name", file: "patterns:\n" + entry("", "{first}"), wantErr: "name is empty"},
		{name: "name with space", file: "patterns:\n" + entry("first last", "{first}"), wantErr: "' ' is not allowed"},
		{name: "name starting with digit", file: "patterns:\n" + entry("1st", "{first}"), wantErr: "start with a letter"},
		{name: "name starting with formula", file: "patterns:\n" + entry("=cmd", "{first}"), wantErr: "start with a letter"},
		{name: "duplicate name", file: "patterns:\n" + entry("a", "{first}") + entry("a", "{last}"), wantErr: "used twice"},
		{name: "duplicate template", file: "patterns:\n" + entry("a", "{first}") + entry("b", "{first}"), wantErr: "same template"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParsePatterns([]byte(tt.file))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want it to mention %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(tt.want) {
				t.Fatalf("got %d patterns, want %d", len(got), len(tt.want))
			}
			for i := range got {
				if got[i].Name != tt.want[i].Name || got[i].Template != tt.want[i].Template || got[i].Join != tt.want[i].Join {
					t.Errorf("pattern %d = %+v, want %+v", i, got[i], tt.want[i])
				}
			}
		})
	}
}

func TestLoadPatterns(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.yaml")
	if err := os.WriteFile(good, []byte("patterns:\n  - name: flast\n    template: \"{f}{last}\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	ps, err := LoadPatterns(good)
	if err != nil || len(ps) != 1 || ps[0].Name != "flast" {
		t.Fatalf("LoadPatterns = %+v, %v", ps, err)
	}
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte("patterns:\n  - name: x\n    template: \"{nope}\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadPatterns(bad); err == nil || !strings.Contains(err.Error(), bad) || !strings.Contains(err.Error(), "{nope}") {
		t.Errorf("bad file: err = %v, want it to name the file and the placeholder", err)
	}
	if _, err := LoadPatterns(filepath.Join(dir, "missing.yaml")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing file: err = %v, want a wrapped not-exist error", err)
	}
}

// The default list starts with the patterns in the order the issue gives as
// the most common ones.
func TestDefaultPatternsOrder(t *testing.T) {
	want := []string{"first.last", "flast", "first", "firstlast", "f.last", "first_last", "firstl", "last.first", "last", "lastf"}
	ps := DefaultPatterns()
	if len(ps) < len(want) {
		t.Fatalf("%d default patterns, want at least %d", len(ps), len(want))
	}
	for i, name := range want {
		if ps[i].Name != name {
			t.Errorf("default pattern %d is %q, want %q", i, ps[i].Name, name)
		}
	}
}
