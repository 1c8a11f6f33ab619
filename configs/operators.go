package configs

import (
	"bytes"
	_ "embed"
)

//go:embed operators.yaml
var defaultOperatorsYAML []byte

// DefaultOperatorsYAML returns the documented table of mail operators: which
// MX host names each provider runs, the politeness limits that apply to it as
// a whole, and what it is known to do. The operator package parses it.
func DefaultOperatorsYAML() []byte { return bytes.Clone(defaultOperatorsYAML) }
