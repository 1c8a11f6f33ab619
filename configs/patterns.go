package configs

import (
	"bytes"
	_ "embed"
)

//go:embed patterns.yaml
var defaultPatternsYAML []byte

// DefaultPatternsYAML returns the documented default list of address patterns
// used by the find command. The format is parsed and validated by the finder
// package, which owns the template syntax; this package only ships the file.
func DefaultPatternsYAML() []byte { return bytes.Clone(defaultPatternsYAML) }
