package main

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// The output may be something other than a regular file: a device, a pipe,
// a FIFO. fsync does not apply to them, and must not stop the run. The
// sandbox's slow host keeps the run going past the first periodic flush.
func TestOutputToDevicesAndPipes(t *testing.T) {
	t.Run("/dev/null", func(t *testing.T) {
		code, _, stderr := runCLI(t, "", "verify", "--sandbox", "../../examples/leads.csv", "-o", "/dev/null", "--progress", "off")
		if code != exitOK {
			t.Fatalf("exit %d, stderr:\n%s", code, stderr)
		}
	})
	t.Run("FIFO", func(t *testing.T) {
		fifo := filepath.Join(t.TempDir(), "out.fifo")
		if err := syscall.Mkfifo(fifo, 0o600); err != nil {
			t.Fatalf("mkfifo: %v", err)
		}
		got := make(chan string, 1)
		go func() {
			f, err := os.Open(fifo) // blocks until the writer opens it
			if err != nil {
				got <- "open: " + err.Error()
				return
			}
			defer f.Close()
			data, _ := io.ReadAll(f)
			got <- string(data)
		}()
		code, _, stderr := runCLI(t, "", "verify", "--sandbox", "../../examples/leads.csv", "-o", fifo, "--progress", "off")
		if code != exitOK {
			t.Fatalf("exit %d, stderr:\n%s", code, stderr)
		}
		out := <-got
		in, _ := os.ReadFile("../../examples/leads.csv")
		if rows, want := len(readCSV(t, out)), len(readCSV(t, string(in))); rows != want {
			t.Errorf("%d rows came through the FIFO, want %d", rows, want)
		}
	})
	t.Run("resume refuses a FIFO", func(t *testing.T) {
		fifo := filepath.Join(t.TempDir(), "out.fifo")
		if err := syscall.Mkfifo(fifo, 0o600); err != nil {
			t.Fatalf("mkfifo: %v", err)
		}
		code, _, stderr := runCLI(t, "", "verify", "--sandbox", "../../examples/leads.csv", "-o", fifo, "--resume", "--progress", "off")
		if code != exitUsage || !strings.Contains(stderr, "regular file") {
			t.Errorf("exit %d, stderr:\n%s", code, stderr)
		}
	})
}

// --formula-safe escapes every cell, addresses included; without it the
// address stays exact (only server text is escaped).
func TestFormulaSafeFlag(t *testing.T) {
	in := filepath.Join(t.TempDir(), "in.csv")
	if err := os.WriteFile(in, []byte("email,note\n=cmd|calc@acme.test,+1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name      string
		flags     []string
		wantEmail string
		wantNote  string
	}{
		{"exact by default", nil, "=cmd|calc@acme.test", "+1"},
		{"formula-safe", []string{"--formula-safe"}, "'=cmd|calc@acme.test", "'+1"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			args := append([]string{"verify", "--sandbox", in, "--progress", "off", "--max-wait", "0"}, tt.flags...)
			code, stdout, stderr := runCLI(t, "", args...)
			if code != exitOK {
				t.Fatalf("exit %d, stderr:\n%s", code, stderr)
			}
			rows := readCSV(t, stdout)
			if len(rows) != 1 {
				t.Fatalf("%d rows", len(rows))
			}
			r := rows[0]
			if r["email"] != tt.wantEmail || r["result_email"] != tt.wantEmail || r["note"] != tt.wantNote {
				t.Errorf("email=%q result_email=%q note=%q, want %q and %q", r["email"], r["result_email"], r["note"], tt.wantEmail, tt.wantNote)
			}
			if r["status"] != "undeliverable" {
				t.Errorf("status %s/%s", r["status"], r["reason"])
			}
		})
	}
}
