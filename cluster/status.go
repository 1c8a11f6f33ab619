package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Status is a snapshot of the cluster, for `bulkverify cluster status`.
type Status struct {
	At      time.Time   `json:"at"`
	Workers []Heartbeat `json:"workers"` // alive: beat within Config.HeartbeatTTL
	Jobs    []JobStatus `json:"jobs"`
}

// JobStatus is one job's units and progress.
type JobStatus struct {
	Record   JobRecord   `json:"record"`
	Progress JobProgress `json:"progress"`
	Queued   int         `json:"queued"`    // units in the work queue, not taken by a worker
	InFlight []RunMark   `json:"in_flight"` // units being probed now
}

// Status reads the cluster's workers and jobs. Only JetStream is asked:
// it works from any machine, with no coordinator running.
func (c *Conn) Status(ctx context.Context) (Status, error) {
	st := Status{At: c.cfg.Now()}
	runs := map[string][]RunMark{}
	if err := c.eachEntry(ctx, c.workers, []string{"w.*", "run.*.*"}, func(key string, val []byte) {
		switch {
		case strings.HasPrefix(key, "w."):
			var hb Heartbeat
			if json.Unmarshal(val, &hb) == nil {
				st.Workers = append(st.Workers, hb)
			}
		case strings.HasPrefix(key, "run."):
			var m RunMark
			parts := strings.Split(key, ".")
			if json.Unmarshal(val, &m) == nil && len(parts) == 3 {
				runs[parts[1]] = append(runs[parts[1]], m)
			}
		}
	}); err != nil {
		return st, err
	}
	slices.SortFunc(st.Workers, func(a, b Heartbeat) int { return strings.Compare(a.ID, b.ID) })

	rctx, cancel := c.request(ctx)
	defer cancel()
	lister, err := c.jobs.ListKeysFiltered(rctx, "job.*")
	if err != nil {
		return st, fmt.Errorf("%w: listing jobs: %v", ErrUnavailable, err)
	}
	var jobs []string
	for k := range lister.Keys() {
		jobs = append(jobs, strings.TrimPrefix(k, "job."))
	}
	slices.Sort(jobs)
	for _, job := range jobs {
		js := JobStatus{InFlight: runs[job]}
		if _, err := c.getJSON(ctx, c.jobs, jobKey(job), &js.Record); err != nil {
			if errors.Is(err, jetstream.ErrKeyNotFound) {
				continue // cleaned up meanwhile
			}
			return st, err
		}
		if _, err := c.getJSON(ctx, c.jobs, progressKey(job), &js.Progress); err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
			return st, err
		}
		info, err := c.units.Info(rctx, jetstream.WithSubjectFilter(jobUnitSubjects(job)))
		if err != nil {
			return st, fmt.Errorf("%w: units of %s: %v", ErrUnavailable, job, err)
		}
		for _, n := range info.State.Subjects {
			js.Queued += int(n)
		}
		js.Queued = max(js.Queued-len(js.InFlight), 0)
		st.Jobs = append(st.Jobs, js)
	}
	return st, nil
}

// eachEntry calls f with every live entry of kv whose key matches one of
// filters.
func (c *Conn) eachEntry(ctx context.Context, kv jetstream.KeyValue, filters []string, f func(key string, val []byte)) error {
	rctx, cancel := c.request(ctx)
	defer cancel()
	w, err := kv.WatchFiltered(rctx, filters, jetstream.IgnoreDeletes())
	if err != nil {
		return fmt.Errorf("%w: reading %s: %v", ErrUnavailable, kv.Bucket(), err)
	}
	defer w.Stop()
	for {
		select {
		case e, ok := <-w.Updates():
			if !ok {
				return fmt.Errorf("%w: reading %s: watcher closed", ErrUnavailable, kv.Bucket())
			}
			if e == nil {
				return nil // all current values seen
			}
			f(e.Key(), e.Value())
		case <-rctx.Done():
			return fmt.Errorf("%w: reading %s: %v", ErrUnavailable, kv.Bucket(), rctx.Err())
		}
	}
}
