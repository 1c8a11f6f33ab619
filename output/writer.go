package output

// Writer writes one output row per input row. Implementations buffer; call
// Flush to push rows to the underlying writer (and to learn of write errors).
// They are not safe for concurrent use.
type Writer interface {
	Write(inputFields []string, r Result) error
	Flush() error // flush buffered rows to the underlying writer
}

var (
	_ Writer = (*CSV)(nil)
	_ Writer = (*JSONL)(nil)
)
