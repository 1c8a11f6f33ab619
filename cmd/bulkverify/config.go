package main

import (
	"fmt"
	"io"

	"github.com/bulkverify/bulkverify/configs"
)

// runConfig prints the documented default config, a starting point for a
// user's own file.
func runConfig(stdout, stderr io.Writer) int {
	if _, err := stdout.Write(configs.DefaultYAML()); err != nil {
		fmt.Fprintf(stderr, "bulkverify: %v\n", err)
		return exitFatal
	}
	return exitOK
}
