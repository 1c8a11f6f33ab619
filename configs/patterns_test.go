package configs_test

import (
	"bytes"
	"strings"
	"testing"

	"github.com/bulkverify/bulkverify/configs"
	"github.com/bulkverify/bulkverify/finder"
)

// The shipped file parses with the strict loader, so every entry is a valid
// pattern with a unique name.
func TestDefaultPatternsParse(t *testing.T) {
	ps, err := finder.ParsePatterns(configs.DefaultPatternsYAML())
	if err != nil {
		t.Fatal(err)
	}
	if len(ps) < 10 {
		t.Errorf("only %d default patterns", len(ps))
	}
}

func TestDefaultPatternsYAMLIsACopy(t *testing.T) {
	a := configs.DefaultPatternsYAML()
	clear(a)
	if b := configs.DefaultPatternsYAML(); bytes.Equal(a, b) || !bytes.Contains(b, []byte("patterns:")) {
		t.Error("DefaultPatternsYAML shares its bytes with the embedded file")
	}
}

// Every entry has a comment above it, which shows an example address.
func TestEveryPatternIsCommented(t *testing.T) {
	lines := strings.Split(string(configs.DefaultPatternsYAML()), "\n")
	entries := 0
	for i, line := range lines {
		if !strings.HasPrefix(strings.TrimSpace(line), "- name:") {
			continue
		}
		entries++
		if i == 0 || !strings.HasPrefix(strings.TrimSpace(lines[i-1]), "#") {
			t.Errorf("line %d %q has no comment above it", i+1, strings.TrimSpace(line))
		}
	}
	ps, err := finder.ParsePatterns(configs.DefaultPatternsYAML())
	if err != nil {
		t.Fatal(err)
	}
	if entries != len(ps) {
		t.Errorf("found %d \"- name:\" lines, the file has %d patterns", entries, len(ps))
	}
}

// The header documents the syntax: every placeholder, every join value, and
// the folding rules.
func TestPatternSyntaxIsDocumented(t *testing.T) {
	var comments strings.Builder
	for _, line := range strings.Split(string(configs.DefaultPatternsYAML()), "\n") {
		if s := strings.TrimSpace(line); strings.HasPrefix(s, "#") {
			comments.WriteString(s + "\n")
		}
	}
	doc := comments.String()
	for _, want := range []string{"{first}", "{middle}", "{last}", "{f}", "{m}", "{l}", "join:", `"-"`, `"."`, `"_"`,
		"ß -> ss", "ø -> o", "O'Brien", "van der Berg", "Smith-Jones", "first K"} {
		if !strings.Contains(doc, want) {
			t.Errorf("the comments of patterns.yaml do not mention %s", want)
		}
	}
}
