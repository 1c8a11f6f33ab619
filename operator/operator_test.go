package operator

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestLookup(t *testing.T) {
	table := Default()
	tests := []struct {
		host, want string
		own        bool
	}{
		{"aspmx.l.google.com", "google", false},
		{"ALT1.ASPMX.L.GOOGLE.COM.", "google", false},
		{"gmail-smtp-in.l.google.com", "google", false},
		{"smtp.google.com", "google", false},
		{"contoso-com.mail.protection.outlook.com", "microsoft", false},
		{"contoso-com.f-v1.mx.microsoft", "microsoft", false},
		// The longest pattern wins: consumer Outlook.com is not a tenant.
		{"hotmail-com.olc.protection.outlook.com", "outlook", false},
		{"mta5.am0.yahoodns.net", "yahoo", false},
		{"mx01.mail.icloud.com", "apple", false},
		{"mx0a-001.pphosted.com", "proofpoint", false},
		{"us-smtp-inbound-1.mimecast.com", "mimecast", false},
		{"d123.ess.barracudanetworks.com", "barracuda", false},
		{"mx1.hc1234-5.iphmx.com", "cisco", false},
		{"in1-smtp.messagingengine.com", "fastmail", false},
		{"mx00.kundenserver.de", "gmx", false},
		// A pattern "*.example" does not match example itself.
		{"google.com", "google.com", true},
		{"mail.example.org", "mail.example.org", true},
		{"notgoogle.com", "notgoogle.com", true},
	}
	for _, tt := range tests {
		o := table.Lookup(tt.host)
		if o.Name != tt.want || o.Own() != tt.own {
			t.Errorf("Lookup(%q) = %q (own %v), want %q (own %v)", tt.host, o.Name, o.Own(), tt.want, tt.own)
		}
	}
}

func TestDefaultTable(t *testing.T) {
	table := Default()
	if len(table.Operators()) < 15 {
		t.Errorf("%d operators in the built-in table", len(table.Operators()))
	}
	for _, o := range table.Operators() {
		if o.Display == "" || o.Source == "" || o.Sessions <= 0 || o.RcptPerSecond == nil || o.Backoff <= 0 {
			t.Errorf("%s: every built-in entry names its provider and source and sets its limits: %+v", o.Name, o)
		}
	}
	if table.Named("google") == nil || table.Named("nope") != nil {
		t.Error("Named")
	}
}

func TestUserTable(t *testing.T) {
	dir := t.TempDir()
	write := func(name, text string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := write("good.yaml", `operators:
  - name: google
    mx: ["*.google.com"]
    sessions: 2
  - name: acmehost
    display: Acme Hosting
    mx: ["*.acmehost.example", "mx.acme.example"]
    sessions: 3
    rcpt_per_second: 0
    accepts_all: true
`)
	table, err := Load(good)
	if err != nil {
		t.Fatal(err)
	}
	if o := table.Lookup("aspmx.l.google.com"); o.Sessions != 2 {
		t.Errorf("the user's google entry did not replace the built-in one: %+v", o)
	}
	if o := table.Lookup("googlemail.l.googlemail.com"); o.Name != "googlemail.l.googlemail.com" {
		t.Errorf("a replaced entry's patterns linger: %q", o.Name)
	}
	if o := table.Lookup("MX.ACME.EXAMPLE"); o.Name != "acmehost" || !o.AcceptsAll || o.RcptPerSecond == nil || *o.RcptPerSecond != 0 {
		t.Errorf("user operator: %+v", o)
	}
	if o := table.Lookup("mta5.am0.yahoodns.net"); o.Name != "yahoo" {
		t.Errorf("built-in entries are kept: %q", o.Name)
	}

	for _, tt := range []struct{ name, text, want string }{
		{"unknown key", "operators:\n  - name: x\n    mx: [\"*.x.example\"]\n    limit: 3\n", "limit"},
		{"no patterns", "operators:\n  - name: x\n", "no mx patterns"},
		{"bad name", "operators:\n  - name: Big Corp\n    mx: [\"*.x.example\"]\n", "lower-case"},
		{"bad pattern", "operators:\n  - name: x\n    mx: [\"mx*.example\"]\n", "mx pattern"},
		{"negative", "operators:\n  - name: x\n    mx: [\"*.x.example\"]\n    sessions: -1\n", "negative"},
		{"twice", "operators:\n  - name: x\n    mx: [\"*.x.example\"]\n  - name: x\n    mx: [\"*.y.example\"]\n", "twice"},
		{"shared pattern", "operators:\n  - name: x\n    mx: [\"*.x.example\"]\n  - name: y\n    mx: [\"*.x.example\"]\n", "belongs to"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Load(write(tt.name+".yaml", tt.text))
			if !errors.Is(err, ErrBadTable) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %v, want ErrBadTable mentioning %q", err, tt.want)
			}
		})
	}
	if _, err := Load(filepath.Join(dir, "missing.yaml")); err == nil {
		t.Error("a missing file is no error")
	}
}

func FuzzLookup(f *testing.F) {
	table := Default()
	for _, s := range []string{"aspmx.l.google.com", "", ".", "a..b", "*.google.com", "x.mail.protection.outlook.com."} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, host string) {
		if o := table.Lookup(host); o == nil || o.Name == "" && normName(host) != "" {
			t.Fatalf("Lookup(%q) = %+v", host, o)
		}
	})
}
