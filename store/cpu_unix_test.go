//go:build unix

package store

import (
	"syscall"
	"testing"
	"time"
)

// processCPU is the CPU time this process has used, user and system. The
// benchmarks report it per op ("cpu-ns/op"): on a machine shared with other
// work it is steadier than wall time, and it is the cost the store adds to
// a CPU-bound run, whichever goroutine pays it.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// cpuMeter reports the process CPU time per op from its start to b's end.
func cpuMeter(b *testing.B) func() {
	start := processCPU()
	return func() {
		b.ReportMetric(float64((processCPU()-start).Nanoseconds())/float64(b.N), "cpu-ns/op")
	}
}
