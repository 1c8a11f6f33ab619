// Package e2e is bulkverify's end-to-end suite against real servers rather
// than the in-process mailsim world: nsd (an authoritative DNS server) serving
// the zone "test." and a postfix instance with its own configuration directory,
// both on loopback and started by scripts/e2e/up.sh in a temporary directory,
// and microsocks (a SOCKS5 server) for the runs through a proxy. The built
// bulkverify binary is run as a user would run it, and the suite checks its
// CSV output and postfix's own log and queue (whose client addresses tell a
// proxied session from a direct one).
//
// The cluster suite (cluster_test.go) runs bulkverify as a cluster instead:
// the real nats-server with JetStream embedded in the test process, three
// "bulkverify worker" processes each sending from its own loopback address,
// and "bulkverify verify --nats" as the coordinator, against a mailsim world
// in the test process, whose servers count sessions at once per host and per
// operator and who asked for which recipient; it kills a worker, the
// coordinator and the NATS server mid-job.
//
// The package holds tests only. They skip, saying why, when nsd, postfix,
// openssl or microsocks are not installed, when not run as root, or with
// -short, so that a plain "go test ./..." passes on any machine; .ci/run
// installs the Debian packages so that CI runs them, and sets
// BULKVERIFY_REQUIRE_E2E=1, which turns each of those skips into a failure
// (see internal/testenv): in CI a suite that did not run must not look like
// one that passed.
package e2e
