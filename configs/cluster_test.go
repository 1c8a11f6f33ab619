package configs

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestClusterDefaultsAndValidation(t *testing.T) {
	c := Default().Cluster
	if c.UnitSize != 2000 || c.Replicas != 1 || c.AckWait != 2*time.Minute || c.MaxDeliver != 5 || c.LeaseTTL != 30*time.Second {
		t.Errorf("defaults: %+v", c)
	}
	for _, tc := range []struct {
		yaml, err string
	}{
		{"cluster: {replicas: 2}", "cluster.replicas is 2"},
		{"cluster: {unit_size: 0}", "cluster.unit_size must be positive"},
		{"cluster: {unit_size: 50000}", "more than 10000"},
		{"cluster: {max_deliver: 1}", "no second try"},
		{"cluster: {lease_ttl: 100ms}", "at least 1s"},
		{"cluster: {nats_urls: x}", "not found"},
	} {
		_, err := parse(Default(), []byte(tc.yaml))
		if err == nil || !strings.Contains(err.Error(), tc.err) {
			t.Errorf("%s: got %v, want %q", tc.yaml, err, tc.err)
		}
	}
}

// The example configs of deploy/ load as they are.
func TestDeployConfigLoads(t *testing.T) {
	path := filepath.Join("..", "deploy", "config", "bulkverify.yaml")
	if _, err := os.Stat(path); err != nil {
		t.Skip("no deploy/ beside configs/")
	}
	c, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if c.Cluster.NATSURL != "nats://nats:4222" {
		t.Errorf("nats_url %q", c.Cluster.NATSURL)
	}
}
