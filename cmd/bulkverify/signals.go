package main

import (
	"fmt"
	"io"
	"time"

	"github.com/bulkverify/bulkverify/configs"
	"github.com/bulkverify/bulkverify/signals"
)

// loadSignals loads the lists the config names (a bad list file is a usage
// error naming file and line) and warns on stderr when the built-in
// disposable list is older than signals.disposable_max_age at now.
func loadSignals(cfg configs.Config, now time.Time, stderr io.Writer) (*signals.Set, error) {
	sc := cfg.Signals
	set, err := signals.Load(signals.Options{
		Disposable: signals.ListFile{Path: sc.DisposableFile, Mode: signals.Mode(sc.DisposableMode)},
		Free:       signals.ListFile{Path: sc.FreeFile, Mode: signals.Mode(sc.FreeMode)},
		Role:       signals.ListFile{Path: sc.RoleFile, Mode: signals.Mode(sc.RoleMode)},
		NoTypos:    !sc.Typos,
	})
	if err != nil {
		return nil, usageError{err}
	}
	if info, stale := set.Stale(now, sc.DisposableMaxAge); stale {
		days := int(now.Sub(info.Date).Hours() / 24)
		fmt.Fprintf(stderr, "warning: the built-in list of disposable domains is from %s (%d days ago); newer ones are not flagged. "+
			"Pass a current list with --disposable-list FILE (signals.disposable_file), or set signals.disposable_max_age to 0s to silence this.\n",
			info.Date.Format(time.DateOnly), days)
	}
	return set, nil
}
