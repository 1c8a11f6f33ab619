package store_test

import (
	"testing"

	"github.com/bulkverify/bulkverify/output"
	"github.com/bulkverify/bulkverify/pipeline"
	"github.com/bulkverify/bulkverify/store"
)

// The freshness defaults name statuses and reasons by their words; they
// must be the words the pipeline writes.
func TestFreshnessVocabulary(t *testing.T) {
	statuses := []string{output.StatusDeliverable, output.StatusUndeliverable, output.StatusRisky, output.StatusUnknown, output.StatusInvalid}
	byStatus := store.DefaultByStatus()
	if len(byStatus) != len(statuses) {
		t.Errorf("defaults for %d statuses, the output has %d", len(byStatus), len(statuses))
	}
	for _, s := range statuses {
		if _, ok := byStatus[s]; !ok {
			t.Errorf("no default lifetime for status %q", s)
		}
	}
	reasons := map[string]bool{}
	for _, r := range []string{pipeline.ReasonGreylisted, pipeline.ReasonTemporary, pipeline.ReasonTimeout,
		pipeline.ReasonConnectionFailed, pipeline.ReasonConnectionLost, pipeline.ReasonDNSError, pipeline.ReasonMXUnresolvable} {
		reasons[r] = true
	}
	for r := range store.DefaultByReason() {
		if !reasons[r] {
			t.Errorf("default lifetime for %q, which is not a pipeline reason", r)
		}
	}
	if len(store.DefaultByReason()) != len(reasons) {
		t.Errorf("%d reason defaults, want %d", len(store.DefaultByReason()), len(reasons))
	}
}
