package output

// Writer writes one output row per input row. Implementations buffer; call
// Flush to push rows to the underlying writer (and to learn of write errors).
// They are not safe for concurrent use.
type Writer = RowWriter[Result]

var (
	_ Writer = (*CSV)(nil)
	_ Writer = (*JSONL)(nil)
)
