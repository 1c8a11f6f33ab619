package cluster

import (
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"hash/fnv"
	"regexp"
	"strconv"
)

// WireVersion is the version of every subject, stream, bucket and message
// below. A change that old workers or coordinators cannot read gets a new
// version, and with it new names, so two versions can share one NATS server
// without reading each other's messages.
const WireVersion = 1

// Subjects. A job's units and results live under its own subjects, so a job
// can be followed, counted and purged on its own.
const (
	// subjectPrefix starts every subject bulkverify publishes to.
	subjectPrefix = "bulkverify.v1"
	// unitSubjects: bulkverify.v1.units.JOB.UNIT, one message per unit.
	unitSubjects = subjectPrefix + ".units.>"
	// resultSubjects: bulkverify.v1.results.JOB.UNIT, one message per
	// address of the unit.
	resultSubjects = subjectPrefix + ".results.>"
)

// Streams and buckets.
const (
	// UnitsStream is the work queue: a message is removed once a worker
	// acknowledges it, which it does only after the unit's results are stored.
	UnitsStream = "BULKVERIFY_V1_UNITS"
	// ResultsStream holds the results until the job's coordinator has them.
	ResultsStream = "BULKVERIFY_V1_RESULTS"
	// WorkersConsumer is the one durable pull consumer all workers share.
	WorkersConsumer = "bulkverify-v1-workers"

	// JobsBucket holds each job's record (job.JOB), its collector's
	// progress (prog.JOB) and the marks of its finished units
	// (done.JOB.UNIT). No TTL: a job is cleaned up by its coordinator.
	JobsBucket = "bulkverify-v1-jobs"
	// WorkersBucket holds the heartbeats of live workers (w.ID) and the
	// units they are probing (run.JOB.UNIT). Its TTL is the heartbeat TTL,
	// so a dead worker disappears by itself.
	WorkersBucket = "bulkverify-v1-workers"
	// LeasesBucket holds the session leases of the politeness budget
	// (s.OPERATOR.SLOT) and the marks of budgets waiting for one
	// (w.OPERATOR.BUDGET). Its TTL is the lease TTL: a lease whose holder
	// stops renewing it expires.
	LeasesBucket = "bulkverify-v1-leases"
	// RatesBucket holds the rest of the budget, which must outlive a lease:
	// RCPT token buckets (r.OPERATOR) and pushback state and pauses
	// (p.OPERATOR). Its TTL (a day) only forgets operators no longer asked.
	RatesBucket = "bulkverify-v1-rates"
	// CatchAllBucket holds each domain's accept-all answer and the claim of
	// the worker asking now (ca.DOMAIN).
	CatchAllBucket = "bulkverify-v1-catchall"
	// VerdictsBucket is the cluster's verdict cache (v.NAMESPACE.DOMAIN.HASH).
	VerdictsBucket = "bulkverify-v1-verdicts"
)

func unitSubject(job, unit string) string   { return subjectPrefix + ".units." + job + "." + unit }
func jobUnitSubjects(job string) string     { return subjectPrefix + ".units." + job + ".>" }
func resultSubject(job, unit string) string { return subjectPrefix + ".results." + job + "." + unit }
func jobResultSubjects(job string) string   { return subjectPrefix + ".results." + job + ".>" }

// resultsConsumer is the durable consumer of one job's results: it survives
// the coordinator, which is what lets a restarted one continue.
func resultsConsumer(job string) string { return "bulkverify-v1-results-" + job }

// unitMsgID and resultMsgID are the Nats-Msg-Id of a unit and of a batch
// of its results (named by a hash of their keys): JetStream drops a second
// message with the same id within the stream's duplicate window, so a
// republished unit or a batch published again is stored once.
func unitMsgID(job, unit string) string { return "u/" + job + "/" + unit }
func resultMsgID(job, unit string, keys []uint64) string {
	h := fnv.New64a()
	var b [8]byte
	for _, k := range keys {
		binary.LittleEndian.PutUint64(b[:], k)
		h.Write(b[:])
	}
	return "r/" + job + "/" + unit + "/" + strconv.Itoa(len(keys)) + "/" + strconv.FormatUint(h.Sum64(), 36)
}

// Keys of the buckets.
func jobKey(job string) string              { return "job." + job }
func progressKey(job string) string         { return "prog." + job }
func doneKey(job, unit string) string       { return "done." + job + "." + unit }
func doneKeys(job string) string            { return "done." + job + ".>" }
func workerKey(id string) string            { return "w." + id }
func runKey(job, unit string) string        { return "run." + job + "." + unit }
func catchAllKey(domain string) string      { return "ca." + keyToken(domain) }
func sessionKey(op string, slot int) string { return "s." + keyToken(op) + "." + strconv.Itoa(slot) }
func sessionKeys(op string) string          { return "s." + keyToken(op) + ".*" }
func waiterKey(op, budget string) string    { return "w." + keyToken(op) + "." + budget }
func rcptKey(op string) string              { return "r." + keyToken(op) }
func pushbackKey(op string) string          { return "p." + keyToken(op) }

// idPattern is what a job or unit id may be: one subject token, one key
// token, short enough for a consumer name.
var idPattern = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

// checkID reports whether id can name a job or unit.
func checkID(what, id string) error {
	if !idPattern.MatchString(id) {
		return fmt.Errorf("%w: %s id %q: want 1 to 64 of A-Z a-z 0-9 _ -", ErrBadID, what, id)
	}
	return nil
}

// plainToken is a name that can be a KV key as it is: dot-separated
// non-empty tokens of the characters keys allow, not starting with "=".
var plainToken = regexp.MustCompile(`^[A-Za-z0-9_-][A-Za-z0-9_-]*(\.[A-Za-z0-9_-]+)*$`)

// keyToken turns an operator or domain name into a KV key part: as it is
// when it can be (so `nats kv ls` stays readable), else "=" and its
// base64url form, which no plain name starts with.
func keyToken(name string) string {
	if len(name) <= 200 && plainToken.MatchString(name) {
		return name
	}
	return "=" + base64.RawURLEncoding.EncodeToString([]byte(name))
}

// tokenName is keyToken undone.
func tokenName(tok string) string {
	if len(tok) > 0 && tok[0] == '=' {
		if b, err := base64.RawURLEncoding.DecodeString(tok[1:]); err == nil {
			return string(b)
		}
	}
	return tok
}
