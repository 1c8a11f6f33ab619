// Package natstest runs a real nats-server with JetStream inside a test
// process, as nats-server's own tests do: on loopback, a port of its own,
// its store in the test's temporary directory, shut down at the test's
// cleanup, and restartable on the same port and store (what JetStream kept
// on disk is all that survives a restart). It is imported by tests only;
// clusters of several servers stay with the suite that needs them.
package natstest

import (
	"net"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// Server is one running nats-server.
type Server struct {
	t    testing.TB
	opts server.Options
	s    *server.Server
}

// Start starts a server with opts, filling in what they leave out: host
// 127.0.0.1, a random port (kept for restarts), JetStream, its store in
// t.TempDir(), no logging, no signal handlers.
func Start(t testing.TB, opts server.Options) *Server {
	t.Helper()
	if opts.Host == "" {
		opts.Host = "127.0.0.1"
	}
	if opts.Port == 0 {
		opts.Port = -1
	}
	if opts.StoreDir == "" {
		opts.StoreDir = t.TempDir()
	}
	opts.JetStream, opts.NoLog, opts.NoSigs = true, true, true
	ns := &Server{t: t, opts: opts}
	ns.start()
	ns.opts.Port = ns.s.Addr().(*net.TCPAddr).Port
	t.Cleanup(ns.Shutdown)
	return ns
}

// URL is the server's client URL.
func (ns *Server) URL() string { return ns.s.ClientURL() }

// Shutdown stops the server and waits until it has.
func (ns *Server) Shutdown() {
	if ns.s != nil {
		ns.s.Shutdown()
		ns.s.WaitForShutdown()
	}
}

// Restart stops the server and starts it again on the same port and store.
func (ns *Server) Restart() {
	ns.t.Helper()
	ns.Shutdown()
	ns.start()
}

func (ns *Server) start() {
	ns.t.Helper()
	opts := ns.opts
	s, err := server.NewServer(&opts)
	if err != nil {
		ns.t.Fatalf("nats-server: %v", err)
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		s.Shutdown()
		ns.t.Fatal("nats-server: not ready for connections")
	}
	ns.s = s
}
