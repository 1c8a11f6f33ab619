// Package enginebench compares, side by side in one run, the engines
// considered for the verdict store (issue 12): the store as built (sorted
// segments in one bbolt file), bbolt with one B-tree key per verdict, and
// SQLite (modernc.org/sqlite, pure Go) with one row per verdict. It is a
// module of its own so that SQLite is not a dependency of bulkverify.
//
//	cd store/enginebench && go test -run '^$' -bench . -benchtime 1000000x
//
// One op is one verdict written (Put*) or read back (Lookup*, a range scan
// per domain in (domain, address) order). cpu-ns/op is the process's CPU
// time per op, steadier than wall time on a shared machine.
package enginebench
