package main

import (
	"bytes"
	"errors"
	"flag"
	"io"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/bulkverify/bulkverify/egress"
)

func TestDoctorSandbox(t *testing.T) {
	code, stdout, stderr := runCLI(t, "", "doctor", "--sandbox")
	if code != exitFatal {
		t.Fatalf("exit %d, want 1 (the sandbox lists its own address); stderr:\n%s", code, stderr)
	}
	for _, want := range []string{
		"PASS  resolver: MX of acme.test, globex.test, catchall.test resolved",
		"PASS  port 25 [direct]: mx1.acme.test: ok",
		"PASS  address [direct]: 127.0.0.1 (learnt from TXT myaddr.mailsim.test)",
		"PASS  PTR [direct]: 127.0.0.1 -> sandbox.bulkverify.test",
		"PASS  FCrDNS [direct]",
		"PASS  HELO [direct]",
		"FAIL  DNSBL bl.mailsim.test [direct]: 127.0.0.1 is listed (127.0.0.2",
		"WARN  DNSBL zen.mailsim.test [direct]: could not check",
		"WARN  MAIL FROM: the null sender <>",
		"      fix: set --mail-from",
		"doctor: 6 pass, 3 warn, 1 fail",
	} {
		if !strings.Contains(stdout, want) {
			t.Errorf("output lacks %q:\n%s", want, stdout)
		}
	}
}

func TestDoctorSandboxWithRealSender(t *testing.T) {
	code, stdout, _ := runCLI(t, "", "doctor", "--sandbox", "--mail-from", "verify@bulkverify.test", "--source-ip", "127.0.0.2")
	if code != exitFatal {
		t.Fatalf("exit %d", code)
	}
	for _, want := range []string{
		"PASS  MAIL FROM MX: bulkverify.test receives mail at mx.mailhost.test",
		"PASS  HELO domain",
		"FAIL  SPF [127.0.0.2]: fail for bulkverify.test from 127.0.0.2",
		"FAIL  PTR [127.0.0.2]: 127.0.0.2 has no PTR record",
		"PASS  DNSBL bl.mailsim.test [127.0.0.2]: 127.0.0.2 is not listed",
	} {
		if !strings.Contains(stdout, want) {
			t.Errorf("output lacks %q:\n%s", want, stdout)
		}
	}
}

// A dead proxy fails port 25 without its password showing anywhere.
func TestDoctorDeadProxy(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	code, stdout, stderr := runCLI(t, "", "doctor", "--sandbox", "--proxy", "socks5://alice:hunter2@"+addr)
	if code != exitFatal {
		t.Fatalf("exit %d", code)
	}
	if !strings.Contains(stdout, "FAIL  port 25 [socks5://"+addr+"]") || !strings.Contains(stdout, "fix: check the proxy") {
		t.Errorf("output:\n%s", stdout)
	}
	if strings.Contains(stdout+stderr, "hunter2") {
		t.Error("the proxy password shows")
	}
}

func TestDoctorUsage(t *testing.T) {
	if code, _, _ := runCLI(t, "", "doctor", "extra"); code != exitUsage {
		t.Errorf("an argument: exit %d", code)
	}
	if code, _, stderr := runCLI(t, "", "doctor", "--sandbox", "--proxy", "socks5://u:hunter2@nohostport"); code != exitUsage ||
		strings.Contains(stderr, "hunter2") || !strings.Contains(stderr, "socks5://u:xxxxx@nohostport") {
		t.Errorf("bad proxy: exit %d, stderr %q", code, stderr)
	}
	if code, _, _ := runCLI(t, "", "doctor", "-h"); code != exitOK {
		t.Errorf("-h: exit %d", code)
	}
	if code, stdout, _ := runCLI(t, "", "help"); code != exitOK || !strings.Contains(stdout, "bulkverify doctor") {
		t.Errorf("usage does not list doctor")
	}
}

// runPreflight parses args like a command that runs a list, prepares the
// sandbox if asked, and runs the preflight.
func runPreflight(t *testing.T, args ...string) (string, error) {
	t.Helper()
	fs := flag.NewFlagSet("test", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	sf := addSharedFlags(fs)
	addPreflightFlag(fs, sf)
	if err := fs.Parse(args); err != nil {
		t.Fatal(err)
	}
	cfg, err := sf.config(fs)
	if err != nil {
		t.Fatal(err)
	}
	stop, err := sf.prepare(t.Context(), &cfg, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	res, err := newResolver(cfg)
	if err != nil {
		t.Fatal(err)
	}
	pool, err := newPool(cfg)
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	err = preflight(t.Context(), cfg, probeConfig(cfg), pool, res, &stderr)
	return stderr.String(), err
}

func TestPreflight(t *testing.T) {
	stderr, err := runPreflight(t, "--sandbox")
	if err != nil || !strings.Contains(stderr, "port 25 reachable from 1 of 1 egresses") {
		t.Errorf("sandbox preflight: %v\n%s", err, stderr)
	}
	// 192.0.2.1 is not on this machine: binding it fails before any packet.
	stderr, err = runPreflight(t, "--sandbox", "--source-ip", "127.0.0.1", "--source-ip", "192.0.2.1")
	if err != nil || !strings.Contains(stderr, "egress 192.0.2.1 reached no canary mail server") ||
		!strings.Contains(stderr, "port 25 reachable from 1 of 2 egresses") {
		t.Errorf("one bad egress: %v\n%s", err, stderr)
	}
	_, err = runPreflight(t, "--sandbox", "--source-ip", "192.0.2.1")
	var pe *egress.Port25Error
	if !errors.As(err, &pe) || exitCode(t.Context(), err) != exitFatal {
		t.Errorf("no egress reaches port 25: %v", err)
	}
	if stderr, err := runPreflight(t, "--sandbox", "--source-ip", "192.0.2.1", "--no-preflight"); err != nil || stderr != "" {
		t.Errorf("--no-preflight: %v %q", err, stderr)
	}
}

func TestEgressFlags(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.yaml")
	file := "egress:\n  proxies: [\"socks5://file.example:1080\"]\n  source_ips: [127.0.0.9]\n"
	if err := os.WriteFile(path, []byte(file), 0o600); err != nil {
		t.Fatal(err)
	}
	parse := func(args ...string) (*sharedFlags, *flag.FlagSet) {
		fs := flag.NewFlagSet("test", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		sf := addSharedFlags(fs)
		addPreflightFlag(fs, sf)
		if err := fs.Parse(args); err != nil {
			t.Fatal(err)
		}
		return sf, fs
	}
	sf, fs := parse("--config", path, "--proxy", "socks5://a.example:1080", "--proxy", "socks5://b.example:1080", "--no-preflight")
	cfg, err := sf.config(fs)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"socks5://a.example:1080", "socks5://b.example:1080"}; !reflect.DeepEqual(cfg.Egress.Proxies, want) {
		t.Errorf("proxies %v, want the flags' %v", cfg.Egress.Proxies, want)
	}
	if !reflect.DeepEqual(cfg.Egress.SourceIPs, []string{"127.0.0.9"}) || cfg.Egress.Preflight {
		t.Errorf("source IPs %v (want the file's), preflight %v", cfg.Egress.SourceIPs, cfg.Egress.Preflight)
	}
	sf, fs = parse("--source-ip", "127.0.0.7", "--source-ip", "127.0.0.8")
	if cfg, err = sf.config(fs); err != nil || !reflect.DeepEqual(cfg.Egress.SourceIPs, []string{"127.0.0.7", "127.0.0.8"}) || !cfg.Egress.Preflight {
		t.Errorf("source IPs %v, preflight %v, err %v", cfg.Egress.SourceIPs, cfg.Egress.Preflight, err)
	}
	sf, fs = parse("--source-ip", "eth0")
	if _, err := sf.config(fs); err == nil || exitCode(t.Context(), err) != exitUsage {
		t.Errorf("a bad source address: %v", err)
	}
	if _, _, err := newBreakers(cfg); err != nil {
		t.Errorf("breakers from the defaults: %v", err)
	}
}
