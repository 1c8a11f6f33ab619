package configs

import (
	"bytes"
	_ "embed"
)

//go:embed replies.yaml
var defaultRepliesYAML []byte

// DefaultRepliesYAML returns the documented built-in table of rules that
// read mail servers' replies. The format is parsed and validated by the
// verdict package, which owns the vocabulary; this package only ships the
// file.
func DefaultRepliesYAML() []byte { return bytes.Clone(defaultRepliesYAML) }
