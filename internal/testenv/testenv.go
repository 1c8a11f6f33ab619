package testenv

import (
	"fmt"
	"os"
	"testing"
)

// RequireVar is the environment variable that turns a suite's skip for lack
// of tools or privileges into a failure. .ci/run sets it to "1" after
// installing the Debian packages the suites need.
const RequireVar = "BULKVERIFY_REQUIRE_E2E"

// Required reports whether the environment demands that every suite run.
func Required() bool { return os.Getenv(RequireVar) == "1" }

// Unavailable ends t because something it needs is missing here: a skip on
// an ordinary machine, a failure when Required, so that CI cannot pass a
// suite that did not run.
func Unavailable(t testing.TB, format string, args ...any) {
	t.Helper()
	why := fmt.Sprintf(format, args...)
	if Required() {
		t.Fatalf("%s; %s=1 requires this suite to run (see .ci/run)", why, RequireVar)
	}
	t.Skip(why)
}
