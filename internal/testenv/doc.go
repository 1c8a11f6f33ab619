// Package testenv holds what the test suites share about the machine they
// run on, so that every suite treats a missing tool the same way.
//
// A suite that needs something outside Go (real postfix and nsd for e2e/, a
// browser for a report test, root) skips itself on a developer's machine
// that lacks it, so a plain "go test ./..." passes anywhere. In CI that skip
// would look like a pass: .ci/run sets BULKVERIFY_REQUIRE_E2E=1 once it has
// installed the packages, and then Unavailable fails the test instead.
//
// It owns only that decision; finding the tools and starting the servers
// stay with each suite. It is imported by tests only.
package testenv
