package cluster

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Config says where the NATS server is and how the cluster's streams and
// buckets behave. The zero value works against nats://127.0.0.1:4222; the
// defaults are in the field comments.
type Config struct {
	// URL of the NATS server(s), comma-separated; default nats.DefaultURL.
	URL string
	// CredsFile is a NATS credentials file (JWT and NKey seed); "" = none.
	// Its content is secret: it is read by the NATS client only, never
	// printed or stored.
	CredsFile string
	// Name is the connection's name in the server's monitoring, default
	// "bulkverify".
	Name string
	// Replicas of every stream and bucket created, default 1; 3 in a
	// three-node NATS cluster, so losing one server loses nothing.
	Replicas int
	// AckWait is how long a unit may go without a sign of life from its
	// worker before it is given to another worker, default 2m. A worker
	// signals every AckWait/3 while it probes, so this only needs to cover
	// a worker that died or was cut off.
	AckWait time.Duration
	// MaxDeliver is how often a unit is handed out at most, default 5. On
	// its last delivery a worker that cannot finish the unit publishes
	// unknown/worker_failed results for the addresses left, so every
	// address still gets a row.
	MaxDeliver int
	// NakDelay is how long a unit its worker gave back after a failure waits
	// before it is handed out again, default 5s.
	NakDelay time.Duration
	// DuplicateWindow is how long JetStream remembers message ids to drop a
	// unit or result published twice, default 20m.
	DuplicateWindow time.Duration
	// ResultsMaxAge bounds how long results wait for their coordinator,
	// default 168h; a job whose coordinator never returns is dropped then.
	ResultsMaxAge time.Duration
	// LeaseTTL is how long a session lease (or a waiter's mark) lives
	// without being renewed, default 30s; holders renew every LeaseTTL/3.
	// A killed worker's sessions are free again at most LeaseTTL later.
	LeaseTTL time.Duration
	// HeartbeatTTL is how long a worker counts as alive after its last
	// heartbeat, default 30s; workers beat every HeartbeatTTL/3.
	HeartbeatTTL time.Duration
	// CatchAllTTL is how long a domain's accept-all answer is reused by the
	// cluster, default 24h.
	CatchAllTTL time.Duration
	// ClaimTTL is how long a worker's claim to check a domain's accept-all
	// answer holds before another may take it over, default 2m.
	ClaimTTL time.Duration
	// VerdictMaxAge is the longest a verdict stays in the cluster's verdict
	// cache, default 720h; each verdict's own retention (by its class) is
	// given when it is put, and may only be shorter.
	VerdictMaxAge time.Duration
	// RequestTimeout bounds each request to JetStream, and the wait for the
	// acknowledgement of each message published without waiting (units,
	// results, done marks, verdicts), default 10s. A message whose
	// acknowledgement does not come is published again.
	RequestTimeout time.Duration
	// Now is the clock of checked_at, leases, token buckets and heartbeats;
	// nil = time.Now. Workers' clocks should be NTP-synchronised: RCPT
	// tokens and claims compare times written by different machines.
	Now func() time.Time
}

func (c Config) withDefaults() Config {
	if c.URL == "" {
		c.URL = nats.DefaultURL
	}
	if c.Name == "" {
		c.Name = "bulkverify"
	}
	if c.Replicas <= 0 {
		c.Replicas = 1
	}
	setDur := func(d *time.Duration, def time.Duration) {
		if *d <= 0 {
			*d = def
		}
	}
	setDur(&c.AckWait, 2*time.Minute)
	setDur(&c.NakDelay, 5*time.Second)
	setDur(&c.DuplicateWindow, 20*time.Minute)
	setDur(&c.ResultsMaxAge, 168*time.Hour)
	setDur(&c.LeaseTTL, 30*time.Second)
	setDur(&c.HeartbeatTTL, 30*time.Second)
	setDur(&c.CatchAllTTL, 24*time.Hour)
	setDur(&c.ClaimTTL, 2*time.Minute)
	setDur(&c.VerdictMaxAge, 720*time.Hour)
	setDur(&c.RequestTimeout, 10*time.Second)
	if c.MaxDeliver <= 0 {
		c.MaxDeliver = 5
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c
}

// Conn is a connection to the cluster's NATS server with its streams and
// buckets in place. It is safe for concurrent use; Close it when done.
type Conn struct {
	cfg Config
	nc  *nats.Conn
	js  jetstream.JetStream

	units    jetstream.Stream
	results  jetstream.Stream
	jobs     jetstream.KeyValue
	workers  jetstream.KeyValue
	leases   jetstream.KeyValue
	rates    jetstream.KeyValue
	catchAll jetstream.KeyValue
	verdicts jetstream.KeyValue
}

// ErrUnavailable wraps a failure to reach NATS or JetStream: the server is
// down, unreachable, or has no JetStream.
var ErrUnavailable = errors.New("cluster: NATS JetStream unavailable")

// Connect connects to NATS and creates (or updates to this version's
// settings) the streams and buckets. It keeps trying while the server is
// not ready, until ctx ends: a worker started before its server waits.
func Connect(ctx context.Context, cfg Config) (*Conn, error) {
	cfg = cfg.withDefaults()
	opts := []nats.Option{
		nats.Name(cfg.Name),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250 * time.Millisecond),
		nats.RetryOnFailedConnect(true),
		// Errors are returned to callers; the client's own logging would
		// go to stderr behind our back.
		nats.ErrorHandler(func(*nats.Conn, *nats.Subscription, error) {}),
	}
	if cfg.CredsFile != "" {
		if _, err := os.Stat(cfg.CredsFile); err != nil {
			return nil, fmt.Errorf("cluster: credentials file: %w", err)
		}
		opts = append(opts, nats.UserCredentials(cfg.CredsFile))
	}
	nc, err := nats.Connect(cfg.URL, opts...)
	if err != nil {
		return nil, fmt.Errorf("%w: connecting to %s: %v", ErrUnavailable, redactURL(cfg.URL), err)
	}
	// The acknowledgement of a message published without waiting is lost
	// for good when the stream's leader goes away with it (a server shut
	// down, a leader elected): it is not a disconnect of ours, so without
	// a timeout its future would never resolve, and whoever waits on it
	// would wait for as long as their context lasts.
	js, err := jetstream.New(nc,
		jetstream.WithPublishAsyncMaxPending(4096),
		jetstream.WithPublishAsyncTimeout(cfg.RequestTimeout))
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	c := &Conn{cfg: cfg, nc: nc, js: js}
	for {
		err = c.setup(ctx)
		if err == nil {
			return c, nil
		}
		if ctx.Err() != nil {
			nc.Close()
			return nil, fmt.Errorf("%w: %v", ErrUnavailable, err)
		}
		select {
		case <-time.After(250 * time.Millisecond):
		case <-ctx.Done():
		}
	}
}

// Close closes the connection, flushing what was published.
func (c *Conn) Close() error {
	err := c.nc.Drain()
	if err != nil {
		c.nc.Close()
	}
	return err
}

// Config returns the configuration in force, defaults filled in.
func (c *Conn) Config() Config { return c.cfg }

// NATS returns the underlying connection, e.g. for the server's URL.
func (c *Conn) NATS() *nats.Conn { return c.nc }

// request returns a context for one request to JetStream.
func (c *Conn) request(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, c.cfg.RequestTimeout)
}

// electionWait is how long whileElecting waits between tries.
const electionWait = 100 * time.Millisecond

// whileElecting runs op with a context bounded by RequestTimeout, and
// again while no server answers it, for up to RequestTimeout in all: a
// stream or bucket just created, or whose leader is being elected, has no
// responder for a moment (nats.ErrNoResponders), which is no reason to
// fail a job. Any other error, or ctx ending, ends it at once.
func (c *Conn) whileElecting(ctx context.Context, op func(ctx context.Context) error) error {
	give := time.Now().Add(c.cfg.RequestTimeout)
	for {
		rctx, cancel := c.request(ctx)
		err := op(rctx)
		cancel()
		if err == nil || !errors.Is(err, nats.ErrNoResponders) || !time.Now().Before(give) {
			return err
		}
		if !sleepCtx(ctx, electionWait) {
			return err
		}
	}
}

// storeMsg publishes m and returns once JetStream has stored it. While
// the stream is away (its leader lost and another being elected, a server
// restarting) it tries again, each try bounded by RequestTimeout, until
// ctx ends; a refusal of the message itself (a 4xx error from JetStream)
// ends it at once. m must be harmless to store twice (a Nats-Msg-Id, or a
// KV value put again): a try whose acknowledgement was lost may have
// stored it.
func (c *Conn) storeMsg(ctx context.Context, m *nats.Msg) error {
	for {
		rctx, cancel := c.request(ctx)
		// No responders (no leader yet) is tried again by the client
		// itself a few times; this loop does the rest.
		_, err := c.js.PublishMsg(rctx, m)
		cancel()
		if err == nil {
			return nil
		}
		var apiErr *jetstream.APIError
		if errors.As(err, &apiErr) && apiErr.Code >= 400 && apiErr.Code < 500 || errors.Is(err, jetstream.ErrInvalidOption) {
			return fmt.Errorf("cluster: storing %s: %w", m.Subject, err)
		}
		if !sleepCtx(ctx, 250*time.Millisecond) {
			return fmt.Errorf("%w: storing %s: %v (giving up: %w)", ErrUnavailable, m.Subject, err, ctx.Err())
		}
	}
}

// settle waits until every future's message is stored: a message whose
// acknowledgement failed or did not come in time (its stream's leader
// lost with it) is stored again with storeMsg, so it ends only when all
// are stored or ctx ends. The messages must be harmless to store twice.
// It returns how many were stored before an error.
func (c *Conn) settle(ctx context.Context, futures []jetstream.PubAckFuture) (int, error) {
	for i, f := range futures {
		select {
		case <-f.Ok():
		case err := <-f.Err():
			if err2 := c.storeMsg(ctx, f.Msg()); err2 != nil {
				return i, fmt.Errorf("%w (first try: %v)", err2, err)
			}
		case <-ctx.Done():
			return i, fmt.Errorf("%w: storing %s: %w", ErrUnavailable, f.Msg().Subject, ctx.Err())
		}
	}
	return len(futures), nil
}

// setup creates (or, when their settings differ, updates) the streams,
// the workers' consumer and the buckets. Every process does this at start;
// they all ask for the same settings, so whichever comes first wins and the
// others change nothing.
func (c *Conn) setup(ctx context.Context) error {
	ctx, cancel := c.request(ctx)
	defer cancel()
	var err error
	c.units, err = c.ensureStream(ctx, jetstream.StreamConfig{
		Name:        UnitsStream,
		Description: "bulkverify work units, one per MX-host group (v" + strconv.Itoa(WireVersion) + ")",
		Subjects:    []string{unitSubjects},
		Retention:   jetstream.WorkQueuePolicy,
		Storage:     jetstream.FileStorage,
		Replicas:    c.cfg.Replicas,
		Duplicates:  c.cfg.DuplicateWindow,
		MaxMsgSize:  MaxUnitBytes + 4096,
	})
	if err != nil {
		return fmt.Errorf("stream %s: %w", UnitsStream, err)
	}
	_, err = c.units.CreateOrUpdateConsumer(ctx, jetstream.ConsumerConfig{
		Durable:       WorkersConsumer,
		Description:   "the workers' shared pull consumer",
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       c.cfg.AckWait,
		MaxDeliver:    c.cfg.MaxDeliver,
		FilterSubject: unitSubjects,
		MaxAckPending: 10000,
		Replicas:      c.cfg.Replicas,
	})
	if err != nil {
		return fmt.Errorf("consumer %s: %w", WorkersConsumer, err)
	}
	c.results, err = c.ensureStream(ctx, jetstream.StreamConfig{
		Name:        ResultsStream,
		Description: "bulkverify results, one per address, until the job's coordinator has them",
		Subjects:    []string{resultSubjects},
		Retention:   jetstream.LimitsPolicy,
		Storage:     jetstream.FileStorage,
		Replicas:    c.cfg.Replicas,
		Duplicates:  c.cfg.DuplicateWindow,
		MaxAge:      c.cfg.ResultsMaxAge,
	})
	if err != nil {
		return fmt.Errorf("stream %s: %w", ResultsStream, err)
	}
	buckets := []struct {
		kv  *jetstream.KeyValue
		cfg jetstream.KeyValueConfig
	}{
		{&c.jobs, jetstream.KeyValueConfig{Bucket: JobsBucket, Description: "bulkverify jobs and their progress"}},
		{&c.workers, jetstream.KeyValueConfig{Bucket: WorkersBucket, Description: "bulkverify workers alive", TTL: c.cfg.HeartbeatTTL}},
		{&c.leases, jetstream.KeyValueConfig{Bucket: LeasesBucket, Description: "bulkverify politeness budget per operator", TTL: c.cfg.LeaseTTL}},
		{&c.rates, jetstream.KeyValueConfig{Bucket: RatesBucket, Description: "bulkverify RCPT rates and pushback per operator", TTL: 24 * time.Hour}},
		{&c.catchAll, jetstream.KeyValueConfig{Bucket: CatchAllBucket, Description: "bulkverify accept-all answers per domain", TTL: c.cfg.CatchAllTTL}},
		{&c.verdicts, jetstream.KeyValueConfig{Bucket: VerdictsBucket, Description: "bulkverify verdict cache", TTL: c.cfg.VerdictMaxAge}},
	}
	for _, b := range buckets {
		b.cfg.Storage = jetstream.FileStorage
		b.cfg.Replicas = c.cfg.Replicas
		kv, err := c.ensureKeyValue(ctx, b.cfg)
		if err != nil {
			return fmt.Errorf("bucket %s: %w", b.cfg.Bucket, err)
		}
		*b.kv = kv
	}
	return nil
}

// ensureStream creates the stream, or updates it when it exists with other
// settings. A create with the settings the stream has changes nothing; an
// update would rewrite its configuration all the same, and nats-server
// (2.15) does that without a lock against a consumer being created on the
// stream: every process starting would race every Collect and worker.
func (c *Conn) ensureStream(ctx context.Context, cfg jetstream.StreamConfig) (jetstream.Stream, error) {
	s, err := c.js.CreateStream(ctx, cfg)
	if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
		return c.js.UpdateStream(ctx, cfg)
	}
	return s, err
}

// ensureKeyValue is ensureStream for a bucket.
func (c *Conn) ensureKeyValue(ctx context.Context, cfg jetstream.KeyValueConfig) (jetstream.KeyValue, error) {
	kv, err := c.js.CreateKeyValue(ctx, cfg)
	if errors.Is(err, jetstream.ErrBucketExists) {
		return c.js.UpdateKeyValue(ctx, cfg)
	}
	return kv, err
}

// redactURL drops users and passwords from server URLs before they are shown.
func redactURL(s string) string {
	parts := strings.Split(s, ",")
	for i, p := range parts {
		u, err := url.Parse(strings.TrimSpace(p))
		switch {
		case err != nil && strings.Contains(p, "@"):
			parts[i] = "***@" + p[strings.LastIndex(p, "@")+1:]
		case err == nil && u.User != nil:
			u.User = url.User("***")
			parts[i] = u.String()
		}
	}
	return strings.Join(parts, ",")
}
