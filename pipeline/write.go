package pipeline

import (
	"fmt"
	"strings"
	"time"

	"github.com/bulkverify/bulkverify/output"
	"github.com/bulkverify/bulkverify/signals"
	"github.com/bulkverify/bulkverify/verdict"
)

// readyRow is a result decided without the engine (a row with no address,
// a verdict reused from the store), with the rows it answers.
type readyRow struct {
	rows rowRefs
	res  output.Result
}

// writer is the only goroutine that touches the sink. It writes each
// verdict for every row that asked for its address, writes probed verdicts
// to the store, and lets the memory gauge know the rows are gone. After a
// write error it keeps draining, so that nothing upstream blocks, and
// reports the error.
type writer struct {
	cfg         *Config
	sink        output.Writer
	sum         *Summary
	mem         *gauge
	store       *storeSink
	stopProbing func()
	werr        error
	// Summary.ByStatus and ByReason, counted here while the run lasts.
	byStatus, byReason tally
	total              <-chan int        // the rows of the input, once read (Config.OnTotal)
	free               chan<- []readyRow // batches written, for the loader to fill again
}

// run writes until both channels are closed.
func (w *writer) run(verdicts <-chan Verdict, ready <-chan []readyRow) error {
	ticker := time.NewTicker(w.cfg.FlushInterval)
	defer ticker.Stop()
	for verdicts != nil || ready != nil {
		select {
		case v, ok := <-verdicts:
			if !ok {
				verdicts = nil
				continue
			}
			w.verdict(&v)
			// The verdicts already waiting are taken with plain receives
			// (the writer is the channel's only reader, so they are
			// there), not a select over every channel for each.
			for n := len(verdicts); n > 0; n-- {
				v := <-verdicts
				w.verdict(&v)
			}
		case batch, ok := <-ready:
			if !ok {
				ready = nil
				continue
			}
			for i := range batch {
				w.rows(&batch[i].rows, &batch[i].res)
			}
			clear(batch) // its rows are written: let them go
			select {
			case w.free <- batch[:0]:
			default:
			}
		case n := <-w.total:
			w.onTotal(n)
		case <-ticker.C:
			if checkpoint(*w.cfg, w.sink, &w.werr); w.werr != nil {
				w.stopProbing()
			}
		}
	}
	select {
	case n := <-w.total: // sent before ready was closed
		w.onTotal(n)
	default:
	}
	checkpoint(*w.cfg, w.sink, &w.werr)
	w.byStatus.addTo(w.sum.ByStatus)
	w.byReason.addTo(w.sum.ByReason)
	return w.werr
}

func (w *writer) onTotal(n int) {
	if w.cfg.OnTotal != nil {
		w.cfg.OnTotal(n)
	}
}

// verdict writes a verdict of the engine.
func (w *writer) verdict(v *Verdict) {
	res := verdictResult(v, v.text)
	n := v.rows.count()
	if n > 0 {
		w.rows(&v.rows, &res)
		w.mem.add(-1)
	}
	if w.store.ok() && v.Reason != verdict.ReasonSkipped {
		w.store.put(*v)
	}
}

// verdictResult is the output row of a verdict about email.
func verdictResult(v *Verdict, email string) output.Result {
	res := output.Result{
		Email:          email,
		Status:         v.Status,
		Reason:         v.Reason,
		MXHost:         v.MXHost,
		CatchAll:       v.CatchAll,
		TLS:            v.TLS,
		Attempts:       v.Attempts,
		CheckedAt:      v.At,
		Provider:       v.Provider,
		Egress:         v.Egress,
		Disposable:     v.Signals.Disposable,
		Free:           v.Signals.Free,
		Role:           v.Signals.Role,
		TypoSuggestion: v.Signals.Suggestion,
		Source:         output.SourceProbed,
	}
	if v.Reply != nil {
		res.SMTPCode = v.Reply.Code
		res.EnhancedCode = v.Reply.Enhanced
		res.SMTPMessage = v.Reply.Text()
	}
	return res
}

// rows writes res for each row of refs.
func (w *writer) rows(refs *rowRefs, res *output.Result) {
	w.row(refs.first, res)
	for _, ref := range refs.more {
		w.row(ref, res)
	}
}

// row writes res for one row.
func (w *writer) row(ref rowRef, res *output.Result) {
	if w.werr != nil {
		return
	}
	res.Row = ref.row
	if err := w.sink.Write(ref.fields, *res); err != nil {
		w.werr = fmt.Errorf("writing results: %w", err)
		w.stopProbing()
		return
	}
	w.byStatus.add(res.Status)
	w.byReason.add(res.Reason)
	if res.Source == output.SourceStored {
		w.sum.Stored++
	} else {
		w.sum.Probed++
	}
	if w.cfg.OnResult != nil {
		w.cfg.OnResult(*res)
	}
}

// tally counts words (statuses, reasons) without a map operation per row:
// a run's words are few, and most rows repeat a word of the row before
// (often the very string: then comparing costs nothing).
type tally struct {
	words  []string
	counts []int
	last   int
}

func (t *tally) add(word string) {
	if t.last < len(t.words) && t.words[t.last] == word {
		t.counts[t.last]++
		return
	}
	for i, w := range t.words {
		if w == word {
			t.counts[i]++
			t.last = i
			return
		}
	}
	t.last = len(t.words)
	t.words = append(t.words, word)
	t.counts = append(t.counts, 1)
}

// addTo adds the counts to m.
func (t *tally) addTo(m map[string]int) {
	for i, w := range t.words {
		m[w] += t.counts[i]
	}
}

// invalidSignals fills the signals that still apply to a row that holds no
// address we can probe: a disposable domain is disposable even if the
// address around it is broken.
func invalidSignals(set *signals.Set, raw string, res *output.Result) {
	if set == nil {
		return
	}
	at := strings.LastIndexByte(raw, '@')
	if at <= 0 || at == len(raw)-1 {
		return
	}
	local, domain := raw[:at], strings.ToLower(strings.TrimSpace(raw[at+1:]))
	f := set.Of(local, domain, true)
	res.Disposable, res.Free, res.Role = f.Disposable, f.Free, f.Role
}

// checkpoint pushes the rows written so far to the output and makes them
// durable, so that a crash loses at most one interval of work.
func checkpoint[T output.Row[T]](cfg Config, sink output.RowWriter[T], werr *error) {
	if *werr != nil {
		return
	}
	err := sink.Flush()
	if err == nil && cfg.Checkpoint != nil {
		err = cfg.Checkpoint()
	}
	if err != nil {
		*werr = fmt.Errorf("writing results: %w", err)
	}
}
