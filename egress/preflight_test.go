package egress

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/bulkverify/bulkverify/mailsim"
	"github.com/bulkverify/bulkverify/probe"
	"github.com/bulkverify/bulkverify/resolve"
)

// canaryWorld has one canary domain per kind of host: answering, down
// (connection refused), silent (accepts, never greets), and one that refuses
// the client 127.0.5.2 at the greeting.
func canaryWorld() mailsim.World {
	d := func(name, host string) mailsim.Domain {
		return mailsim.Domain{Name: name, MX: []mailsim.MX{{Preference: 10, Host: host}}}
	}
	return mailsim.World{
		Domains: []mailsim.Domain{
			d("up.test", "mx.up.test"),
			d("down.test", "mx.down.test"),
			d("silent.test", "mx.silent.test"),
			d("picky.test", "mx.picky.test"),
			{Name: "servfail.test", ServFail: true},
			{Name: "noexchanger.test", A: []string{"127.0.5.99"}},
		},
		Hosts: []mailsim.Host{
			{Name: "mx.up.test", IP: "127.0.5.10"},
			{Name: "mx.down.test", IP: "127.0.5.11", Down: true},
			{Name: "mx.silent.test", IP: "127.0.5.12", Hostile: mailsim.HostileSilent},
			{Name: "mx.picky.test", IP: "127.0.5.13", BlockClients: []string{"127.0.5.2"}},
		},
	}
}

func TestCheckDNS(t *testing.T) {
	sim := startSim(t, canaryWorld())
	tests := []struct {
		name      string
		domains   []string
		wantErr   bool
		allFailed bool
		failed    []string
	}{
		{name: "canaries answer", domains: []string{"up.test", "down.test"}},
		{name: "one temporary failure is a warning", domains: []string{"up.test", "servfail.test"}, failed: []string{"servfail.test"}},
		{name: "all fail temporarily", domains: []string{"servfail.test"}, wantErr: true, allFailed: true, failed: []string{"servfail.test"}},
		{name: "a canary that does not exist", domains: []string{"up.test", "gmail.test"}, wantErr: true, failed: []string{"gmail.test"}},
		{name: "a canary without MX", domains: []string{"up.test", "noexchanger.test"}, wantErr: true, failed: []string{"noexchanger.test"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			res, err := resolve.New(resolve.Config{Servers: []string{sim.DNSAddr()}, Attempts: 1, Timeout: time.Second})
			if err != nil {
				t.Fatal(err)
			}
			report, err := CheckDNS(t.Context(), res, tc.domains)
			var de *DNSError
			if tc.wantErr != errors.As(err, &de) {
				t.Fatalf("err = %v, want error: %v", err, tc.wantErr)
			}
			var failed []string
			for _, c := range report {
				if c.Err != nil {
					failed = append(failed, c.Domain)
				} else if len(c.Hosts) == 0 {
					t.Errorf("%s: no error and no hosts", c.Domain)
				}
			}
			if strings.Join(failed, ",") != strings.Join(tc.failed, ",") {
				t.Errorf("failed canaries %v, want %v", failed, tc.failed)
			}
			if de != nil {
				if de.AllFailed != tc.allFailed {
					t.Errorf("AllFailed = %v", de.AllFailed)
				}
				for _, d := range tc.failed {
					if !strings.Contains(err.Error(), d) || !strings.Contains(err.Error(), "cannot be trusted") {
						t.Errorf("message %q does not name %s", err, d)
					}
				}
			}
		})
	}
}

func port25Config(sim *mailsim.Sim, domains ...string) Port25Config {
	return Port25Config{
		Domains: domains,
		Port:    sim.SMTPPort(),
		Probe:   probe.Config{HeloName: "client.test", GreetingTimeout: 300 * time.Millisecond, CommandTimeout: time.Second},
	}
}

func TestCheckPort25(t *testing.T) {
	sim := startSim(t, canaryWorld())
	res := newResolver(t, sim)
	dead := startSOCKS(t, socksOptions{})
	dead.stop()

	t.Run("every canary refuses or never answers", func(t *testing.T) {
		p := newPool(t, Config{SourceIPs: []string{"127.0.5.1", "127.0.5.3"}})
		before := sim.Connections("mx.silent.test")
		rep, err := CheckPort25(t.Context(), p, res, port25Config(sim, "down.test", "silent.test"))
		var pe *Port25Error
		if !errors.As(err, &pe) {
			t.Fatalf("err = %v, want a Port25Error", err)
		}
		for _, want := range []string{"mx.down.test [127.0.5.11]", "mx.silent.test [127.0.5.12]", "127.0.5.1, 127.0.5.3",
			"4 attempts", "2 refused", "2 timed out", "--proxy", "--source-ip", "bulkverify doctor"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("message lacks %q:\n%v", want, err)
			}
		}
		if len(rep.Attempts) != 4 || len(pe.Attempts) != 4 {
			t.Errorf("attempts %+v", rep.Attempts)
		}
		if n := sim.Connections("mx.silent.test") - before; n != 2 {
			t.Errorf("the silent canary saw %d connections, want one per egress", n)
		}
		for _, a := range rep.Attempts {
			if a.Outcome != OutcomeUnreachable {
				t.Errorf("attempt %+v", a)
			}
		}
	})

	t.Run("some canaries fail: no error", func(t *testing.T) {
		p := newPool(t, Config{SourceIPs: []string{"127.0.5.1"}})
		before := sim.Commands("mx.up.test", "QUIT")
		rep, err := CheckPort25(t.Context(), p, res, port25Config(sim, "up.test", "down.test", "silent.test", "nxdomain.test"))
		if err != nil {
			t.Fatalf("err = %v", err)
		}
		if !rep.Reached("127.0.5.1") || len(rep.Attempts) != 3 || len(rep.Unresolved) != 1 || rep.Unresolved[0].Domain != "nxdomain.test" {
			t.Errorf("report %+v", rep)
		}
		if sim.Commands("mx.up.test", "QUIT")-before != 1 || sim.Commands("mx.up.test", "RCPT") != 0 || sim.Commands("mx.up.test", "MAIL") != 0 {
			t.Error("the canary session was not banner, EHLO, QUIT only")
		}
	})

	t.Run("per egress: refused at the greeting, proxy dead, fine", func(t *testing.T) {
		p := newPool(t, Config{SourceIPs: []string{"127.0.5.1", "127.0.5.2"}, Proxies: []string{dead.url("")}})
		rep, err := CheckPort25(t.Context(), p, res, port25Config(sim, "picky.test"))
		if err != nil {
			t.Fatalf("err = %v", err)
		}
		want := map[string]Outcome{"127.0.5.1": OutcomeOK, "127.0.5.2": OutcomeRefused, dead.url(""): OutcomeEgressFailed}
		for _, a := range rep.Attempts {
			if a.Outcome != want[a.Egress] {
				t.Errorf("%s: %s (%v), want %s", a.Egress, a.Outcome, a.Err, want[a.Egress])
			}
		}
		if !rep.Reached("127.0.5.2") || rep.Reached(dead.url("")) {
			t.Error("a refusal at the greeting is a reached port 25; a dead proxy is not")
		}
		if n := sim.ConnectionsFrom("mx.picky.test", "127.0.5.2"); n != 1 {
			t.Errorf("picky saw %d connections from the refused address", n)
		}
	})

	t.Run("only dead proxies", func(t *testing.T) {
		p := newPool(t, Config{Proxies: []string{dead.url("")}})
		_, err := CheckPort25(t.Context(), p, res, port25Config(sim, "up.test"))
		var pe *Port25Error
		if !errors.As(err, &pe) || !strings.Contains(err.Error(), "1 egress failed") {
			t.Fatalf("err = %v", err)
		}
	})

	t.Run("the whole check is bounded", func(t *testing.T) {
		p := newPool(t, Config{})
		cfg := port25Config(sim, "silent.test")
		cfg.Probe.GreetingTimeout = time.Hour // capped at 20s, and the bound below is shorter
		cfg.Timeout = 300 * time.Millisecond
		rep, err := CheckPort25(t.Context(), p, res, cfg)
		var pe *Port25Error
		if !errors.As(err, &pe) || len(rep.Attempts) != 1 || !isTimeout(rep.Attempts[0].Err) {
			t.Fatalf("err = %v, attempts %+v", err, rep.Attempts)
		}
	})

	t.Run("no canary resolves", func(t *testing.T) {
		p := newPool(t, Config{})
		_, err := CheckPort25(t.Context(), p, res, port25Config(sim, "nxdomain.test"))
		var pe *Port25Error
		if !errors.As(err, &pe) || !strings.Contains(err.Error(), "could be resolved") {
			t.Fatalf("err = %v", err)
		}
	})
}
