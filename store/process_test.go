package store

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The tests here run a second process: this test binary, re-executed with
// storeChildEnv naming what it should do (TestStoreChild).
const (
	storeChildEnv = "BULKVERIFY_STORE_TEST_CHILD"
	storePathEnv  = "BULKVERIFY_STORE_TEST_PATH"
	batchVerdicts = 100
)

// TestStoreChild is the child process's body; it does nothing in a normal run.
func TestStoreChild(t *testing.T) {
	mode := os.Getenv(storeChildEnv)
	if mode == "" {
		t.Skip("only run as a child process")
	}
	path := os.Getenv(storePathEnv)
	s, err := Open(path, Options{BatchSize: 1 << 30, FlushInterval: time.Hour})
	if err != nil {
		fmt.Printf("open failed: %v\n", err)
		os.Exit(3)
	}
	ctx := context.Background()
	switch mode {
	case "hold":
		// Keep the store open until the parent closes our stdin.
		fmt.Println("open")
		io.Copy(io.Discard, os.Stdin)
		s.Close()
	case "write":
		// Commit batches of batchVerdicts without end (bounded, in case the
		// parent dies), telling the parent each one that is on disk.
		for b := 0; b < 100000; b++ {
			for i := range batchVerdicts {
				v := Verdict{Address: fmt.Sprintf("b%06d-%03d@d%d.test", b, i, i%10), Status: "deliverable",
					Reason: "accepted", Attempts: b, Message: strings.Repeat("x", 100)}
				if err := s.Put(ctx, v); err != nil {
					fmt.Printf("put failed: %v\n", err)
					os.Exit(3)
				}
			}
			if err := s.Flush(ctx); err != nil {
				fmt.Printf("flush failed: %v\n", err)
				os.Exit(3)
			}
			fmt.Printf("committed %d\n", b)
		}
		s.Close()
	}
	os.Exit(0)
}

func startChild(t *testing.T, mode, path string) (*exec.Cmd, io.WriteCloser, *bufio.Scanner) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestStoreChild$", "-test.v=false")
	cmd.Env = append(os.Environ(), storeChildEnv+"="+mode, storePathEnv+"="+path)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	return cmd, stdin, bufio.NewScanner(stdout)
}

func TestSecondOpenIsRefused(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s.db")
	s := openTest(t, path, Options{})
	_, err := Open(path, Options{LockTimeout: 50 * time.Millisecond})
	var inUse *InUseError
	if !errors.As(err, &inUse) || !errors.Is(err, ErrInUse) || inUse.Path != path {
		t.Fatalf("second Open in the same process: %v", err)
	}
	if _, err := Open(path, Options{ReadOnly: true, LockTimeout: 50 * time.Millisecond}); !errors.Is(err, ErrInUse) {
		t.Errorf("read-only Open while a writer has it: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s2 := openTest(t, path, Options{})
	s2.Close()
}

func TestOtherProcessIsRefused(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s.db")
	cmd, stdin, out := startChild(t, "hold", path)
	if !out.Scan() || out.Text() != "open" {
		t.Fatalf("child did not open the store: %q %v", out.Text(), out.Err())
	}
	_, err := Open(path, Options{LockTimeout: 50 * time.Millisecond})
	var inUse *InUseError
	if !errors.As(err, &inUse) {
		t.Fatalf("Open while another process has the store: %v", err)
	}
	if !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "in use") {
		t.Errorf("unclear message: %v", err)
	}
	stdin.Close()
	if err := cmd.Wait(); err != nil {
		t.Fatalf("child: %v", err)
	}
	s := openTest(t, path, Options{})
	s.Close()
}

// TestKillMidWrite kills a process that is writing batches (SIGKILL, so
// nothing is flushed on the way out), then reopens the store: it opens
// cleanly and holds a prefix of the batches, each whole, at least all those
// the child had been told were committed.
func TestKillMidWrite(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a child process")
	}
	for round, after := range []int{5, 40} {
		t.Run(strconv.Itoa(round), func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "s.db")
			cmd, _, out := startChild(t, "write", path)
			committed := -1
			for committed < after && out.Scan() {
				line := out.Text()
				n, err := strconv.Atoi(strings.TrimPrefix(line, "committed "))
				if err != nil {
					t.Fatalf("child says %q", line)
				}
				committed = n
			}
			if committed < after {
				t.Fatalf("child stopped after batch %d: %v", committed, out.Err())
			}
			// The child is writing further batches (and compacting) now.
			if err := cmd.Process.Kill(); err != nil {
				t.Fatal(err)
			}
			cmd.Wait()

			s := openTest(t, path, Options{})
			perBatch := map[int]int{}
			if err := s.Each(ctx(t), nil, func(v Verdict) error {
				perBatch[v.Attempts]++
				return nil
			}); err != nil {
				t.Fatalf("reading the store after kill -9: %v", err)
			}
			last := -1
			for b := 0; ; b++ {
				n, ok := perBatch[b]
				if !ok {
					break
				}
				if n != batchVerdicts {
					t.Errorf("batch %d has %d of %d verdicts", b, n, batchVerdicts)
				}
				last = b
			}
			if len(perBatch) != last+1 {
				t.Errorf("batches stored are not a prefix: %d batches, last of the prefix %d", len(perBatch), last)
			}
			if last < committed {
				t.Errorf("batch %d was committed but is lost (store holds 0..%d)", committed, last)
			}
			t.Logf("child told of %d batches, store holds 0..%d", committed, last)
		})
	}
}
