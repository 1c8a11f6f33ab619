package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Bad input, tried as a new user would: each case gets a clear error that
// names the line, or an invalid row; nothing panics, no row is dropped.
func TestBadInput(t *testing.T) {
	long := strings.Repeat("x", 300)
	huge := strings.Repeat("y", 1<<20)
	tests := []struct {
		name     string
		input    string
		wantCode int
		wantErr  string            // in stderr, for errors
		want     map[string]string // row -> "status/reason", for runs
	}{
		{name: "empty file", input: "", wantCode: exitUsage, wantErr: "empty"},
		{name: "header only", input: "email\n", wantCode: exitOK, want: map[string]string{}},
		{name: "stray quote", input: "email,note\na@acme.test,ok\nb@acme.test,say \"hi\" \"x\n", wantCode: exitUsage, wantErr: "line 3"},
		{name: "ragged rows", input: "email,note\nalice@acme.test\nbob@acme.test,a,b\ncarol@acme.test,ok\n", wantCode: exitOK,
			want: map[string]string{"1": "invalid/ragged_row", "2": "invalid/ragged_row", "3": "deliverable/accepted"}},
		{name: "a 1 MB field", input: "email,note\nalice@acme.test," + huge + "\n", wantCode: exitOK,
			want: map[string]string{"1": "deliverable/accepted"}},
		{name: "non-UTF-8 bytes", input: "email\n\xff\xfe@acme.test\nalice@acme.test\n", wantCode: exitOK,
			want: map[string]string{"1": "invalid/syntax", "2": "deliverable/accepted"}},
		{name: "column name with spaces and a BOM", input: "\ufeff E-Mail ,x\nalice@acme.test,1\n", wantCode: exitOK,
			want: map[string]string{"1": "deliverable/accepted"}},
		{name: "addresses", wantCode: exitOK, input: "email\n" +
			"\"\"\"a b\"\"@nonexistent.test\"\n" + // "a b"@…, CSV-quoted: a valid quoted local part; the domain does not exist
			"a@[127.0.0.1]\n" +
			"a@-x-.com\n" +
			long + "@acme.test\n" +
			"alice@acme.test.\n" + // one trailing dot on the domain is the root
			"alice.@acme.test\n" +
			"a@acme.test..\n",
			want: map[string]string{"1": "invalid/nxdomain", "2": "invalid/address_literal", "3": "invalid/syntax",
				"4": "invalid/too_long", "5": "deliverable/accepted", "6": "invalid/syntax", "7": "invalid/syntax"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := filepath.Join(t.TempDir(), "in.csv")
			if err := os.WriteFile(in, []byte(tt.input), 0o644); err != nil {
				t.Fatal(err)
			}
			code, stdout, stderr := runCLI(t, "", "verify", "--sandbox", in, "--progress", "off")
			if code != tt.wantCode {
				t.Fatalf("exit %d, want %d\n%s", code, tt.wantCode, stderr)
			}
			if tt.wantErr != "" {
				if !strings.Contains(stderr, tt.wantErr) {
					t.Errorf("stderr does not mention %q:\n%s", tt.wantErr, stderr)
				}
				return
			}
			rows := readCSV(t, stdout)
			if len(rows) != len(tt.want) {
				t.Fatalf("%d rows, want %d", len(rows), len(tt.want))
			}
			for _, r := range rows {
				if got := r["status"] + "/" + r["reason"]; got != tt.want[r["row"]] {
					t.Errorf("row %s: %s, want %s", r["row"], got, tt.want[r["row"]])
				}
			}
		})
	}
}
