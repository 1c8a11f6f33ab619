package testenv

import (
	"fmt"
	"runtime"
	"strings"
	"testing"
)

// recorder is a testing.TB that records how a test ended instead of ending
// the real one. Like the real thing, Skip and Fatalf end the goroutine.
type recorder struct {
	testing.TB
	skipped, failed bool
	msg             string
}

func (r *recorder) Helper() {}
func (r *recorder) Skip(args ...any) {
	r.skipped, r.msg = true, fmt.Sprint(args...)
	runtime.Goexit()
}
func (r *recorder) Fatalf(format string, args ...any) {
	r.failed, r.msg = true, fmt.Sprintf(format, args...)
	runtime.Goexit()
}

func TestUnavailable(t *testing.T) {
	for _, tt := range []struct {
		env           string
		skip, failure bool
	}{
		{"", true, false},
		{"0", true, false},
		{"1", false, true},
	} {
		t.Run("env="+tt.env, func(t *testing.T) {
			t.Setenv(RequireVar, tt.env)
			r := &recorder{TB: t}
			done := make(chan struct{})
			go func() {
				defer close(done)
				Unavailable(r, "no %s here", "nsd")
			}()
			<-done
			if r.skipped != tt.skip || r.failed != tt.failure {
				t.Errorf("skipped=%v failed=%v, want skipped=%v failed=%v", r.skipped, r.failed, tt.skip, tt.failure)
			}
			if !strings.Contains(r.msg, "no nsd here") {
				t.Errorf("message %q does not say why", r.msg)
			}
			if tt.failure && !strings.Contains(r.msg, RequireVar) {
				t.Errorf("failure %q does not name %s", r.msg, RequireVar)
			}
		})
	}
}
