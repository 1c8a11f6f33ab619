package pipeline

import "sync/atomic"

// How memory stays bounded, whatever the size of the input:
//
//   - An input of at most Config.MemoryRows rows is read and grouped in
//     memory at once, as it always was.
//   - A bigger one is hashed by domain into partition files (partition.go)
//     and loaded into the one engine of the run a partition at a time: the
//     next one as soon as the addresses in memory fall below half of
//     MemoryRows, not when the previous partition is finished, so hosts
//     never run dry between partitions and keep their connections.
//   - A decided address leaves memory with its rows once they are written:
//     a target carries its rows, there is no map of every address.
//   - A host that falls behind (a slow or rate-limited provider) while the
//     loader waits for room and connection slots stand idle has the tail of
//     its queue moved to disk (hostspill.go), so that it does not hold the
//     rest of the input back.
//
// gauge counts the addresses in memory: fed and not yet written, minus
// those moved to disk. Addresses waiting for a delayed retry are "parked":
// they count, but the loader does not wait for them to go (see room).
type gauge struct {
	n      atomic.Int64 // addresses in memory
	parked atomic.Int64 // of which waiting for a delayed retry
	peak   atomic.Int64
	spilt  atomic.Int64 // addresses moved to disk, in all
}

func newGauge() *gauge { return &gauge{} }

func (g *gauge) add(d int) {
	if d == 0 {
		return
	}
	v := g.n.Add(int64(d))
	for d > 0 {
		p := g.peak.Load()
		if v <= p || g.peak.CompareAndSwap(p, v) {
			break
		}
	}
}

func (g *gauge) park(d int) { g.parked.Add(int64(d)) }

func (g *gauge) load() int { return int(g.n.Load()) }

// active is the addresses in memory that are not waiting for a retry.
func (g *gauge) active() int { return int(g.n.Load() - g.parked.Load()) }

// MemoryStats says how a run kept its memory bounded.
type MemoryStats struct {
	// Limit is Config.MemoryRows (0 = no limit).
	Limit int `json:"limit"`
	// Partitions is how many parts the input was loaded in (1 = it fit).
	Partitions int `json:"partitions"`
	// PeakAddresses is the most addresses held in memory at once, with
	// their rows.
	PeakAddresses int `json:"peak_addresses"`
	// Spilled counts addresses whose host fell behind and whose place in
	// its queue was kept on disk instead of in memory.
	Spilled int `json:"spilled"`
}
