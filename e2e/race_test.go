//go:build race

package e2e

// raceBuild makes the suite build bulkverify with -race when it runs under
// -race itself, so that a run against real servers also hunts data races.
const raceBuild = true
