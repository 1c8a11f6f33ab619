package configs

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/bulkverify/bulkverify/egress"
	"github.com/bulkverify/bulkverify/store"
)

// Every option must be spelled out in the default file, so that the file is
// complete documentation: decoding it into a generic map must reach every
// struct field.
func TestDefaultFileListsEveryOption(t *testing.T) {
	var doc map[string]map[string]any
	if err := yaml.Unmarshal(defaultYAML, &doc); err != nil {
		t.Fatal(err)
	}
	sections := reflect.TypeOf(Config{})
	for i := range sections.NumField() {
		sec := sections.Field(i)
		secName := sec.Tag.Get("yaml")
		keys, ok := doc[secName]
		if !ok {
			t.Errorf("section %q missing from bulkverify.yaml", secName)
			continue
		}
		for j := range sec.Type.NumField() {
			key := sec.Type.Field(j).Tag.Get("yaml")
			if _, ok := keys[key]; !ok {
				t.Errorf("option %s.%s missing from bulkverify.yaml", secName, key)
			}
		}
		if len(keys) != sec.Type.NumField() {
			t.Errorf("section %q has %d keys, struct has %d fields", secName, len(keys), sec.Type.NumField())
		}
	}
}

func TestEveryOptionIsCommented(t *testing.T) {
	lines := strings.Split(string(defaultYAML), "\n")
	for i, line := range lines {
		trimmed := strings.TrimSpace(line)
		// Deeper lines (list items) belong to the option above them.
		if !strings.HasPrefix(line, "  ") || strings.HasPrefix(line, "    ") || strings.HasPrefix(trimmed, "#") || trimmed == "" {
			continue
		}
		if i == 0 || !strings.HasPrefix(strings.TrimSpace(lines[i-1]), "#") {
			t.Errorf("line %d %q has no comment above it", i+1, trimmed)
		}
	}
}

func TestDefaults(t *testing.T) {
	c := Default()
	if c.SMTP.Port != 25 || c.SMTP.CommandTimeout != 30*time.Second || c.Limits.RcptPerTransaction != 50 ||
		c.Limits.MaxConnectionsPerMX != 2 || c.DNS.Attempts != 3 ||
		c.Signals.DisposableMaxAge != 60*24*time.Hour || !c.Signals.Typos || c.Signals.RoleMode != "extend" {
		t.Errorf("unexpected defaults: %+v", c)
	}
}

func TestLoad(t *testing.T) {
	tests := []struct {
		name    string
		file    string
		check   func(Config) bool
		wantErr string
	}{
		{
			name: "partial file keeps other defaults",
			file: "smtp:\n  helo_name: probe.example.org\n  command_timeout: 5s\n",
			check: func(c Config) bool {
				return c.SMTP.HeloName == "probe.example.org" && c.SMTP.CommandTimeout == 5*time.Second && c.SMTP.Port == 25
			},
		},
		{name: "empty file is the defaults", file: "", check: func(c Config) bool { return reflect.DeepEqual(c, Default()) }},
		{name: "unknown key", file: "smtp:\n  helo: x\n", wantErr: "helo"},
		{name: "bad duration", file: "dns:\n  timeout: soon\n", wantErr: "soon"},
		{name: "zero limit", file: "limits:\n  max_connections: 0\n", wantErr: "limits.max_connections must be positive"},
		{name: "port out of range", file: "smtp:\n  port: 70000\n", wantErr: "not a TCP port"},
		{
			name: "signals",
			file: "signals:\n  disposable_file: my.txt\n  disposable_mode: replace\n  disposable_max_age: 0s\n  typos: false\n",
			check: func(c Config) bool {
				return c.Signals.DisposableFile == "my.txt" && c.Signals.DisposableMode == "replace" &&
					c.Signals.DisposableMaxAge == 0 && !c.Signals.Typos && c.Signals.FreeMode == "extend"
			},
		},
		{name: "bad list mode", file: "signals:\n  role_mode: merge\n", wantErr: `signals.role_mode is "merge"`},
		{name: "empty list mode", file: "signals:\n  free_mode: \"\"\n", wantErr: "signals.free_mode"},
		{name: "negative list age", file: "signals:\n  disposable_max_age: -1h\n", wantErr: "signals.disposable_max_age must not be negative"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "c.yaml")
			if err := os.WriteFile(path, []byte(tt.file), 0o600); err != nil {
				t.Fatal(err)
			}
			c, err := Load(path)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want it to mention %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !tt.check(c) {
				t.Errorf("unexpected config %+v", c)
			}
		})
	}
	if _, err := Load(filepath.Join(t.TempDir(), "missing.yaml")); err == nil {
		t.Error("missing file: no error")
	}
}

// The documented defaults of the egress section are the egress package's.
func TestEgressDefaults(t *testing.T) {
	e := Default().Egress
	if !reflect.DeepEqual(e.CanaryDomains, egress.DefaultCanaryDomains()) ||
		!reflect.DeepEqual(e.DNSCanaryDomains, egress.DefaultCanaryDomains()) ||
		!reflect.DeepEqual(e.PublicAddressNames, egress.DefaultAddressNames()) ||
		!reflect.DeepEqual(e.DNSBLZones, egress.DefaultDNSBLZones()) {
		t.Errorf("egress defaults differ from the egress package's: %+v", e)
	}
	if !e.Preflight || len(e.Proxies) != 0 || len(e.SourceIPs) != 0 || e.FailureThreshold != 3 {
		t.Errorf("egress defaults: %+v", e)
	}
}

func TestEgressValidation(t *testing.T) {
	tests := []struct {
		file    string
		wantErr string
	}{
		{"egress:\n  proxies: [\"socks5://u:${PASS}@proxy.example:1080\"]\n  source_ips: [203.0.113.5]\n", ""},
		{"egress:\n  proxies: [\"http://proxy.example:8080\"]\n", "egress.proxies"},
		{"egress:\n  proxies: [\"socks5://u:hunter2@proxy.example\"]\n", "egress.proxies"},
		{"egress:\n  source_ips: [eth0]\n", "egress.source_ips"},
		{"egress:\n  breaker_host_failure_share: 1.5\n", "egress.breaker_host_failure_share"},
		{"egress:\n  cool_down: 5m\n  max_cool_down: 1m\n", "egress.max_cool_down"},
		{"egress:\n  public_addresses: {direct: nowhere}\n", "egress.public_addresses"},
		{"egress:\n  public_address_names: [\"MX example.org\"]\n", "egress.public_address_names"},
		{"egress:\n  dnsbl_zones: [\"\"]\n", "egress.dnsbl_zones"},
		{"egress:\n  failure_threshold: 0\n", "egress.failure_threshold"},
	}
	for _, tc := range tests {
		path := filepath.Join(t.TempDir(), "c.yaml")
		if err := os.WriteFile(path, []byte(tc.file), 0o600); err != nil {
			t.Fatal(err)
		}
		_, err := Load(path)
		switch {
		case tc.wantErr == "" && err != nil:
			t.Errorf("%q: %v", tc.file, err)
		case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
			t.Errorf("%q: err = %v, want %q", tc.file, err, tc.wantErr)
		}
		if err != nil && strings.Contains(err.Error(), "hunter2") {
			t.Errorf("the error shows the password: %v", err)
		}
	}
	// A list in a file replaces the default list; it is not appended to.
	path := filepath.Join(t.TempDir(), "c.yaml")
	if err := os.WriteFile(path, []byte("egress:\n  canary_domains: [example.org]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := Load(path)
	if err != nil || !reflect.DeepEqual(c.Egress.CanaryDomains, []string{"example.org"}) {
		t.Errorf("canary_domains = %v, %v", c.Egress.CanaryDomains, err)
	}
}

// The documented defaults of the store section are the store's own.
func TestStoreDefaultsMatchThePackage(t *testing.T) {
	c := Default().Store
	if !c.Enabled || c.Path != "" || c.Namespace != store.DefaultNamespace || len(c.SharedNamespaces) != 0 ||
		c.Retention != store.DefaultRetention || c.CatchAllFresh != store.DefaultCatchAll || c.MaxAge != 0 || c.Refresh {
		t.Errorf("store defaults: %+v", c)
	}
	if !reflect.DeepEqual(c.Fresh, store.DefaultByStatus()) {
		t.Errorf("store.fresh = %v, package default %v", c.Fresh, store.DefaultByStatus())
	}
	if !reflect.DeepEqual(c.FreshReasons, store.DefaultByReason()) {
		t.Errorf("store.fresh_reasons = %v, package default %v", c.FreshReasons, store.DefaultByReason())
	}
}

func TestStoreSettings(t *testing.T) {
	tests := []struct {
		name, file, wantErr string
		check               func(Store) bool
	}{
		{name: "partial fresh map keeps other defaults", file: "store:\n  fresh: {unknown: 1h}\n",
			check: func(s Store) bool { return s.Fresh["unknown"] == time.Hour && s.Fresh["deliverable"] == 720*time.Hour }},
		{name: "shared namespaces", file: "store:\n  shared_namespaces: [acme, globex]\n",
			check: func(s Store) bool { return reflect.DeepEqual(s.SharedNamespaces, []string{"acme", "globex"}) }},
		{name: "bad namespace", file: "store:\n  namespace: \"a b\"\n", wantErr: "store.namespace"},
		{name: "bad shared namespace", file: "store:\n  shared_namespaces: [\"\"]\n", wantErr: "store.shared_namespaces"},
		{name: "zero retention", file: "store:\n  retention: 0s\n", wantErr: "store.retention"},
		{name: "unknown status", file: "store:\n  fresh: {deliverabel: 1h}\n", wantErr: "deliverabel"},
		{name: "negative max age", file: "store:\n  max_age: -1h\n", wantErr: "max_age"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "c.yaml")
			if err := os.WriteFile(path, []byte(tt.file), 0o600); err != nil {
				t.Fatal(err)
			}
			c, err := Load(path)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want it to mention %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !tt.check(c.Store) {
				t.Errorf("unexpected store settings %+v", c.Store)
			}
		})
	}
}
