package benchmarks

import (
	"bufio"
	"bytes"
	"os"
	"strconv"
	"strings"
)

// procStatus reads a "kB" field of /proc/self/status (VmRSS, VmHWM) in
// bytes; 0 where there is no such file.
func procStatus(field string) uint64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		name, rest, ok := strings.Cut(sc.Text(), ":")
		if !ok || name != field {
			continue
		}
		kb, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
		if err != nil {
			return 0
		}
		return kb << 10
	}
	return 0
}

// resetPeakRSS sets VmHWM back to the current RSS (Linux: writing 5 to
// clear_refs), so that a run's peak is its own. It reports whether the
// kernel allowed it.
func resetPeakRSS() bool {
	f, err := os.OpenFile("/proc/self/clear_refs", os.O_WRONLY, 0)
	if err != nil {
		return false
	}
	_, werr := f.WriteString("5")
	cerr := f.Close()
	return werr == nil && cerr == nil
}
