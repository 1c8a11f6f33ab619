package configs

import (
	"fmt"
	"time"
)

// Cluster holds the settings of cluster mode (NATS JetStream): where the
// server is and how units and leases behave. See the cluster package.
type Cluster struct {
	NATSURL        string        `yaml:"nats_url"`
	CredsFile      string        `yaml:"creds_file"`
	Replicas       int           `yaml:"replicas"`
	UnitSize       int           `yaml:"unit_size"`
	UnitsPerWorker int           `yaml:"units_per_worker"`
	AckWait        time.Duration `yaml:"ack_wait"`
	MaxDeliver     int           `yaml:"max_deliver"`
	LeaseTTL       time.Duration `yaml:"lease_ttl"`
	HeartbeatTTL   time.Duration `yaml:"heartbeat_ttl"`
	CatchAllTTL    time.Duration `yaml:"catch_all_ttl"`
}

// validate checks the cluster section without touching the network, and
// without reading the credentials file (only the NATS client does).
func (c Cluster) validate() error {
	for _, p := range []struct {
		name  string
		value int64
	}{
		{"cluster.replicas", int64(c.Replicas)},
		{"cluster.unit_size", int64(c.UnitSize)},
		{"cluster.units_per_worker", int64(c.UnitsPerWorker)},
		{"cluster.ack_wait", int64(c.AckWait)},
		{"cluster.max_deliver", int64(c.MaxDeliver)},
		{"cluster.lease_ttl", int64(c.LeaseTTL)},
		{"cluster.heartbeat_ttl", int64(c.HeartbeatTTL)},
		{"cluster.catch_all_ttl", int64(c.CatchAllTTL)},
	} {
		if p.value <= 0 {
			return fmt.Errorf("%s must be positive", p.name)
		}
	}
	if c.Replicas != 1 && c.Replicas != 3 && c.Replicas != 5 {
		return fmt.Errorf("cluster.replicas is %d; want 1, 3 or 5", c.Replicas)
	}
	// A unit of 2,000 addresses is about 100 KB; 10,000 stays well under
	// NATS's default 1 MB payload even with long addresses.
	if c.UnitSize > 10000 {
		return fmt.Errorf("cluster.unit_size %d is more than 10000 addresses", c.UnitSize)
	}
	if c.MaxDeliver < 2 {
		return fmt.Errorf("cluster.max_deliver %d leaves no second try for a unit whose worker died", c.MaxDeliver)
	}
	if c.AckWait < time.Second || c.LeaseTTL < time.Second || c.HeartbeatTTL < time.Second {
		return fmt.Errorf("cluster.ack_wait, lease_ttl and heartbeat_ttl must be at least 1s")
	}
	return nil
}
