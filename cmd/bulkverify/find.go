package main

import (
	"context"
	"fmt"
	"io"
	"os"

	"github.com/bulkverify/bulkverify/configs"
	"github.com/bulkverify/bulkverify/finder"
	"github.com/bulkverify/bulkverify/input"
	"github.com/bulkverify/bulkverify/output"
	"github.com/bulkverify/bulkverify/pipeline"
	"github.com/bulkverify/bulkverify/report"
	"github.com/bulkverify/bulkverify/resolve"
)

// findFlags are find's own flags.
type findFlags struct {
	patterns   string
	top        int
	candidates string
}

func runFind(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs, rf := newRunFlagSet("find", "bulkverify find [flags] PEOPLE.csv  (columns first_name, last_name or name, and domain)", stderr)
	ff := &findFlags{}
	fs.StringVar(&ff.patterns, "patterns", "", "address patterns `FILE` (default: the built-in configs/patterns.yaml; see \"bulkverify patterns\")")
	fs.IntVar(&ff.top, "top", 0, "try only the first `K` patterns (0 = all)")
	fs.StringVar(&ff.candidates, "candidates", "", "also write one row per candidate address, with its answer, to `FILE`")
	return runFile(ctx, fs, rf, args, stdin, stdout, stderr, func(ctx context.Context, cfg configs.Config) job {
		patterns := finder.DefaultPatterns()
		if ff.patterns != "" {
			var err error
			if patterns, err = finder.LoadPatterns(ff.patterns); err != nil {
				return job{err: usageError{err}}
			}
		}
		if ff.top < 0 {
			return job{err: usageError{fmt.Errorf("--top %d: want 0 (all) or more", ff.top)}}
		}
		in := input.Options{Column: cfg.Input.Column, Names: pipeline.FindDomainColumns(), What: "domain"}
		if rf.resume {
			return job{err: usageError{fmt.Errorf("--resume is not supported by find yet: run it again")}}
		}
		return job{input: in, command: "find", run: func(ctx context.Context, pcfg pipeline.Config, res *resolve.Resolver, src *input.Reader, stdout io.Writer, tick func(report.Row)) (sum pipeline.Summary, err error) {
			out, err := openSink[output.FindResult](rf, src.Header(), stdout, pcfg.TempDir, csvOptions(cfg))
			if err != nil {
				return sum, err
			}
			defer func() {
				if cerr := out.close(); cerr != nil && err == nil {
					err = fmt.Errorf("writing %s: %w", rf.output, cerr)
				}
			}()
			sink := out.sink
			pcfg.Checkpoint = out.sync
			fc := pipeline.FindConfig{Patterns: patterns, TopK: ff.top, OnResult: func(r output.FindResult) { tick(findReportRow(r)) }}
			if ff.candidates != "" {
				f, err := os.Create(ff.candidates)
				if err != nil {
					return sum, usageError{err}
				}
				defer func() {
					if cerr := f.Close(); cerr != nil && err == nil {
						err = fmt.Errorf("writing %s: %w", ff.candidates, cerr)
					}
				}()
				if fc.Candidates, err = newRowWriter[output.CandidateResult](rf.format, f, src.Header(), csvOptions(cfg)); err != nil {
					return sum, fmt.Errorf("writing %s: %w", ff.candidates, err)
				}
			}
			return pipeline.Find(ctx, pcfg, fc, res, src, sink)
		}}
	})
}

func newRowWriter[T output.Row[T]](format string, w io.Writer, header []string, csvOpts []output.CSVOption) (output.RowWriter[T], error) {
	if format == "jsonl" {
		return output.NewJSONLOf[T](w, header)
	}
	return output.NewCSVOf[T](w, header, csvOpts...)
}

// runPatterns prints the documented default patterns file.
func runPatterns(stdout, stderr io.Writer) int {
	if _, err := stdout.Write(configs.DefaultPatternsYAML()); err != nil {
		fmt.Fprintf(stderr, "bulkverify: %v\n", err)
		return exitFatal
	}
	return exitOK
}
