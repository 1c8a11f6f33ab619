package output

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/")

type fixtureRow struct {
	fields []string
	result Result
}

var fixtureHeader = []string{"email", "name", "note"}

// fixtureRows covers the cases a writer must get right; every row's result
// Email is unique so tests can find rows again.
func fixtureRows() []fixtureRow {
	yes, no := true, false
	// Not UTC and not on a second boundary: the writers must normalise it.
	at := time.Date(2024, 5, 6, 7, 8, 9, 987654321, time.FixedZone("CEST", 2*60*60))
	return []fixtureRow{
		{[]string{"ann@example.com", "Ann", "plain"}, Result{
			Row: 1, Email: "ann@example.com", Status: StatusDeliverable, Reason: "accepted",
			SMTPCode: 250, EnhancedCode: "2.1.5", SMTPMessage: "2.1.5 Recipient OK", MXHost: "mx1.example.com",
			CatchAll: &no, Attempts: 1, CheckedAt: at,
		}},
		{[]string{"bob@accept-all.example", "Bob", ""}, Result{
			Row: 2, Email: "bob@accept-all.example", Status: StatusRisky, Reason: "accept_all",
			SMTPCode: 250, SMTPMessage: "OK", MXHost: "mx.accept-all.example", CatchAll: &yes, TLS: &yes, Attempts: 1, CheckedAt: at,
		}},
		{[]string{"formula@example.com", "=HYPERLINK(\"x\")", "user data stays untouched"}, Result{
			Row: 3, Email: "formula@example.com", Status: StatusUnknown, Reason: "greylisted",
			SMTPCode: 451, EnhancedCode: "4.7.1", SMTPMessage: "=cmd|' /C calc'!A0", MXHost: "mx1.example.com",
			Attempts: 3, CheckedAt: at,
		}},
		{[]string{"crlf@example.com", "Cy", "x"}, Result{
			Row: 4, Email: "crlf@example.com", Status: StatusUndeliverable, Reason: "mailbox_unknown",
			SMTPCode: 550, EnhancedCode: "5.1.1", SMTPMessage: "line1\r\nline2", MXHost: "mx1.example.com",
			CatchAll: &no, Attempts: 1, CheckedAt: at,
		}},
		{[]string{"bytes@example.com", "Di", "x"}, Result{
			Row: 5, Email: "bytes@example.com", Status: StatusUndeliverable, Reason: "mailbox_unknown",
			SMTPCode: 550, EnhancedCode: "5.1.1\r\n=1", SMTPMessage: "caf\xe9 \xff\xfe no\x00such\x1b[31m user\u202e",
			MXHost: "mx\r\n.example.com", Attempts: 1, CheckedAt: at,
		}},
		{[]string{"not an address", "Eve, \"the\" one", "multi\nline, \"quoted\""}, Result{
			Row: 6, Email: "not an address", Status: StatusInvalid, Reason: "syntax", CheckedAt: at,
		}},
		{[]string{"short@example.com"}, Result{
			Row: 7, Email: "short@example.com", Status: StatusUnknown, Reason: "timeout", MXHost: "mx2.example.com",
			Attempts: 4, CheckedAt: at,
		}},
		{[]string{"long@example.com", "Lee", "n", "extra1", "extra2"}, Result{
			Row: 8, Email: "long@example.com", Status: StatusUndeliverable, Reason: "policy_block",
			SMTPCode: 554, EnhancedCode: "5.7.1", SMTPMessage: "- " + strings.Repeat("blocked ", 40), MXHost: "mx3.example.com",
			Attempts: 1, CheckedAt: at,
		}},
	}
}

// expectedInput is the input part of a written row: fields fitted to the header.
func expectedInput(fields []string) []string {
	out := make([]string, len(fixtureHeader))
	copy(out, fields)
	return out
}

func writeAll(t *testing.T, w Writer, rows []fixtureRow) {
	t.Helper()
	for _, r := range rows {
		if err := w.Write(r.fields, r.result); err != nil {
			t.Fatalf("Write row %d: %v", r.result.Row, err)
		}
	}
	if err := w.Flush(); err != nil {
		t.Fatalf("Flush: %v", err)
	}
}

func checkGolden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("output differs from %s (go test -update rewrites it)\n got:\n%s\nwant:\n%s", path, got, want)
	}
}

func TestResultColumnsMatchTags(t *testing.T) {
	// The documented output format (README.md, DESIGN.md): changing it is a
	// decision, not a side effect of editing a struct.
	documented := []string{"row", "email", "status", "reason", "smtp_code", "enhanced_code",
		"smtp_message", "mx_host", "catch_all", "tls", "attempts", "checked_at",
		"provider", "egress", "disposable", "free", "role", "typo_suggestion", "source"}
	if !reflect.DeepEqual(ResultColumns(), documented) {
		t.Errorf("ResultColumns() = %q, documented %q", ResultColumns(), documented)
	}
	typ := reflect.TypeFor[Result]()
	for i := range typ.NumField() {
		f := typ.Field(i)
		csvName, _, _ := strings.Cut(f.Tag.Get("csv"), ",")
		jsonName, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if csvName != jsonName {
			t.Errorf("field %s: csv name %q, json name %q", f.Name, csvName, jsonName)
		}
	}
}

func TestCSVGolden(t *testing.T) {
	var buf bytes.Buffer
	w, err := NewCSV(&buf, fixtureHeader)
	if err != nil {
		t.Fatal(err)
	}
	writeAll(t, w, fixtureRows())
	checkGolden(t, "results.csv", buf.Bytes())
}

func TestJSONLGolden(t *testing.T) {
	var buf bytes.Buffer
	w, err := NewJSONL(&buf, fixtureHeader)
	if err != nil {
		t.Fatal(err)
	}
	writeAll(t, w, fixtureRows())
	checkGolden(t, "results.jsonl", buf.Bytes())
}

// TestCSVRoundTrip reads the output back with encoding/csv: what a user's
// tools will do.
func TestCSVRoundTrip(t *testing.T) {
	var buf bytes.Buffer
	w, err := NewCSV(&buf, fixtureHeader)
	if err != nil {
		t.Fatal(err)
	}
	rows := fixtureRows()
	writeAll(t, w, rows)

	records, err := csv.NewReader(&buf).ReadAll() // also checks every line has the header's width
	if err != nil {
		t.Fatalf("output is not valid CSV: %v", err)
	}
	if want := append(append([]string{}, fixtureHeader...), ResultColumnNames(fixtureHeader, ResultColumns())...); !reflect.DeepEqual(records[0], want) {
		t.Errorf("header = %q, want %q", records[0], want)
	}
	seen := map[string]bool{}
	for _, name := range records[0] {
		if seen[name] {
			t.Errorf("header repeats %q: %q", name, records[0])
		}
		seen[name] = true
	}
	if len(records) != len(rows)+1 {
		t.Fatalf("%d records, want header + %d", len(records), len(rows))
	}
	col := func(name string) int { // index of a result column
		for i, c := range ResultColumns() {
			if c == name {
				return len(fixtureHeader) + i
			}
		}
		t.Fatalf("no column %q", name)
		return -1
	}
	for i, row := range rows {
		got := records[i+1]
		if in := got[:len(fixtureHeader)]; !reflect.DeepEqual(in, expectedInput(row.fields)) {
			t.Errorf("row %d input = %q, want %q", row.result.Row, in, expectedInput(row.fields))
		}
		for _, name := range []string{"smtp_message", "mx_host", "enhanced_code"} {
			v := got[col(name)]
			if v != Sanitize(v, 0) || strings.ContainsAny(v[:min(len(v), 1)], "=+-@") {
				t.Errorf("row %d %s = %q is not sanitized", row.result.Row, name, v)
			}
		}
		if n := len([]rune(got[col("smtp_message")])); n > maxMessageRunes {
			t.Errorf("row %d smtp_message is %d runes", row.result.Row, n)
		}
		wantCatchAll := ""
		if row.result.CatchAll != nil {
			wantCatchAll = map[bool]string{true: "true", false: "false"}[*row.result.CatchAll]
		}
		if v := got[col("catch_all")]; v != wantCatchAll {
			t.Errorf("row %d catch_all = %q, want %q", row.result.Row, v, wantCatchAll)
		}
		if row.result.SMTPCode == 0 && got[col("smtp_code")] != "" {
			t.Errorf("row %d: zero smtp_code written as %q", row.result.Row, got[col("smtp_code")])
		}
		if v := got[col("checked_at")]; v != "2024-05-06T05:08:09Z" {
			t.Errorf("row %d checked_at = %q, want RFC 3339 UTC seconds", row.result.Row, v)
		}
	}
}

func TestJSONLRoundTrip(t *testing.T) {
	var buf bytes.Buffer
	w, err := NewJSONL(&buf, fixtureHeader)
	if err != nil {
		t.Fatal(err)
	}
	rows := fixtureRows()
	writeAll(t, w, rows)

	lines := strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n")
	if len(lines) != len(rows) {
		t.Fatalf("%d lines, want %d", len(lines), len(rows))
	}
	for i, row := range rows {
		var got struct {
			Input map[string]string `json:"input"`
			Result
		}
		if err := json.Unmarshal([]byte(lines[i]), &got); err != nil {
			t.Fatalf("line %d is not JSON: %v\n%s", i+1, err, lines[i])
		}
		wantInput := map[string]string{}
		for k, v := range expectedInput(row.fields) {
			wantInput[fixtureHeader[k]] = v
		}
		if !reflect.DeepEqual(got.Input, wantInput) {
			t.Errorf("line %d input = %q, want %q", i+1, got.Input, wantInput)
		}
		want := row.result.clean()
		if !reflect.DeepEqual(got.Result, want) {
			t.Errorf("line %d result =\n %+v\nwant\n %+v", i+1, got.Result, want)
		}
		if !got.CheckedAt.Equal(time.Date(2024, 5, 6, 5, 8, 9, 0, time.UTC)) || !strings.Contains(lines[i], `"checked_at":"2024-05-06T05:08:09Z"`) {
			t.Errorf("line %d checked_at not RFC 3339 UTC seconds: %s", i+1, lines[i])
		}
	}
	if !strings.HasPrefix(lines[0], `{"input":{"email":"ann@example.com","name":"Ann","note":"plain"},"row":1,`) {
		t.Errorf("input object must come first, in header order: %s", lines[0])
	}
}

func TestJSONLKeys(t *testing.T) {
	tests := []struct {
		header []string
		want   string
	}{
		{[]string{"email", "name"}, `{"email":"a","name":"b"}`},
		{[]string{"email", "", "email"}, `{"email":"a","column_2":"b","email_3":"c"}`},
		{[]string{"x", "x_2", "x"}, `{"x":"a","x_2":"b","x_3":"c"}`},
		{[]string{"x", "x", "x_2"}, `{"x":"a","x_2":"b","x_2_3":"c"}`},
		{[]string{"a<b>&c"}, `{"a<b>&c":"a"}`},
		{nil, `{}`},
	}
	for _, tt := range tests {
		var buf bytes.Buffer
		w, err := NewJSONL(&buf, tt.header)
		if err != nil {
			t.Fatal(err)
		}
		if err := w.Write([]string{"a", "b", "c"}, Result{Row: 1}); err != nil {
			t.Fatal(err)
		}
		if err := w.Flush(); err != nil {
			t.Fatal(err)
		}
		if got := buf.String(); !strings.HasPrefix(got, `{"input":`+tt.want+`,"row":1,`) {
			t.Errorf("header %q: line %s, want input %s", tt.header, got, tt.want)
		}
	}
}

func TestCSVHeaderWrittenImmediately(t *testing.T) {
	var buf bytes.Buffer
	if _, err := NewCSV(&buf, []string{"id", "e-mail"}); err != nil {
		t.Fatal(err)
	}
	if want := "id,e-mail," + strings.Join(ResultColumns(), ",") + "\n"; buf.String() != want {
		t.Errorf("after NewCSV the output is %q, want %q", buf.String(), want)
	}
}

type failWriter struct{ err error }

func (f failWriter) Write([]byte) (int, error) { return 0, f.err }

func TestWriteErrors(t *testing.T) {
	boom := errors.New("disk full")
	if _, err := NewCSV(failWriter{boom}, fixtureHeader); !errors.Is(err, boom) {
		t.Errorf("NewCSV = %v, want it to wrap %v", err, boom)
	}

	j, err := NewJSONL(failWriter{boom}, fixtureHeader)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range fixtureRows() {
		if err := j.Write(r.fields, r.result); err != nil {
			t.Fatalf("buffered Write failed early: %v", err)
		}
	}
	if err := j.Flush(); !errors.Is(err, boom) {
		t.Errorf("JSONL Flush = %v, want it to wrap %v", err, boom)
	}
}

func TestResultColumnNames(t *testing.T) {
	cols := []string{"row", "email", "status"}
	tests := []struct {
		name  string
		input []string
		want  []string
	}{
		{"no clash", []string{"name", "company"}, []string{"row", "email", "status"}},
		{"input has email", []string{"email", "name"}, []string{"row", "result_email", "status"}},
		{"input has the renamed name too", []string{"email", "result_email"}, []string{"row", "result_result_email", "status"}},
		{"several", []string{"Status", "status", "row"}, []string{"result_row", "email", "result_status"}},
		{"case differs: no clash", []string{"Email"}, []string{"row", "email", "status"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := ResultColumnNames(tt.input, cols); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

// The default mode escapes only the server's text; FormulaSafe escapes
// every cell a spreadsheet would evaluate, the address included.
func TestFormulaSafe(t *testing.T) {
	header := []string{"email", "=note"}
	fields := []string{"=cmd|calc@corp.test", "-5"}
	res := Result{Row: 1, Email: "=cmd|calc@corp.test", Status: StatusDeliverable, Reason: "accepted",
		SMTPCode: 250, SMTPMessage: "=2+2 ok", CheckedAt: time.Date(2024, 5, 6, 5, 8, 9, 0, time.UTC), Source: SourceProbed}
	tests := []struct {
		name string
		opts []CSVOption
		want []string // header, then the row
	}{
		{"exact by default", nil, []string{
			"email,=note,row,result_email,status,reason,smtp_code,enhanced_code,smtp_message,mx_host,catch_all,tls,attempts,checked_at,provider,egress,disposable,free,role,typo_suggestion,source",
			"=cmd|calc@corp.test,-5,1,=cmd|calc@corp.test,deliverable,accepted,250,,'=2+2 ok,,,,0,2024-05-06T05:08:09Z,,,false,false,false,,probed",
		}},
		{"formula-safe", []CSVOption{FormulaSafe()}, []string{
			"email,'=note,row,result_email,status,reason,smtp_code,enhanced_code,smtp_message,mx_host,catch_all,tls,attempts,checked_at,provider,egress,disposable,free,role,typo_suggestion,source",
			"'=cmd|calc@corp.test,'-5,1,'=cmd|calc@corp.test,deliverable,accepted,250,,'=2+2 ok,,,,0,2024-05-06T05:08:09Z,,,false,false,false,,probed",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			w, err := NewCSV(&buf, header, tt.opts...)
			if err != nil {
				t.Fatal(err)
			}
			if err := w.Write(fields, res); err != nil {
				t.Fatal(err)
			}
			if err := w.Flush(); err != nil {
				t.Fatal(err)
			}
			if got := strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n"); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(tt.want, "\n"))
			}
			if got := CSVHeader[Result](header, tt.opts...); strings.Join(got, ",") != tt.want[0] {
				t.Errorf("CSVHeader = %q, want %q", got, tt.want[0])
			}
		})
	}
}
