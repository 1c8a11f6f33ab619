package output

import "time"

// FindResult is the outcome for one person of the find command: which
// address, if any, was found for their name at their domain.
type FindResult struct {
	Row           int       `csv:"row" json:"row"`
	Email         string    `csv:"email" json:"email"` // the address found; "" when none
	Confidence    string    `csv:"confidence" json:"confidence,omitempty"`
	Status        string    `csv:"status" json:"status"`
	Reason        string    `csv:"reason" json:"reason"`
	Pattern       string    `csv:"pattern" json:"pattern,omitempty"`               // the pattern of Email, e.g. first.last
	DomainPattern string    `csv:"domain_pattern" json:"domain_pattern,omitempty"` // the pattern learnt for the domain
	Alternatives  string    `csv:"alternatives" json:"alternatives,omitempty"`     // other accepted candidates, space-separated
	Candidates    int       `csv:"candidates" json:"candidates"`                   // candidate addresses asked about
	SMTPCode      int       `csv:"smtp_code,omitempty" json:"smtp_code,omitempty"`
	EnhancedCode  string    `csv:"enhanced_code" json:"enhanced_code,omitempty"`
	SMTPMessage   string    `csv:"smtp_message" json:"smtp_message,omitempty"`
	MXHost        string    `csv:"mx_host" json:"mx_host,omitempty"`
	CatchAll      *bool     `csv:"catch_all,omitempty" json:"catch_all,omitempty"`
	TLS           *bool     `csv:"tls,omitempty" json:"tls,omitempty"`
	CheckedAt     time.Time `csv:"checked_at" json:"checked_at"`
}

func (r FindResult) rowNumber() int { return r.Row }

func (FindResult) writeFastCSV(*fastCSV, []string, int) (bool, error) { return false, nil }

func (r FindResult) clean() FindResult {
	cleanServerText(&r.SMTPMessage, &r.MXHost, &r.EnhancedCode, &r.CheckedAt)
	return r
}

// CandidateResult is the answer about one candidate address of one person,
// for find's optional per-candidate output.
type CandidateResult struct {
	Row          int       `csv:"row" json:"row"`
	Candidate    string    `csv:"candidate" json:"candidate"`
	Pattern      string    `csv:"pattern" json:"pattern"`
	Rank         int       `csv:"rank" json:"rank"` // position of the pattern in the pattern list, 0 = most common
	Status       string    `csv:"status" json:"status"`
	Reason       string    `csv:"reason" json:"reason"`
	SMTPCode     int       `csv:"smtp_code,omitempty" json:"smtp_code,omitempty"`
	EnhancedCode string    `csv:"enhanced_code" json:"enhanced_code,omitempty"`
	SMTPMessage  string    `csv:"smtp_message" json:"smtp_message,omitempty"`
	MXHost       string    `csv:"mx_host" json:"mx_host,omitempty"`
	CatchAll     *bool     `csv:"catch_all,omitempty" json:"catch_all,omitempty"`
	Attempts     int       `csv:"attempts" json:"attempts"`
	CheckedAt    time.Time `csv:"checked_at" json:"checked_at"`
}

func (r CandidateResult) rowNumber() int { return r.Row }

func (CandidateResult) writeFastCSV(*fastCSV, []string, int) (bool, error) { return false, nil }

func (r CandidateResult) clean() CandidateResult {
	cleanServerText(&r.SMTPMessage, &r.MXHost, &r.EnhancedCode, &r.CheckedAt)
	return r
}

// RowWriter writes rows of one kind after the input columns.
type RowWriter[T Row[T]] interface {
	Write(inputFields []string, r T) error
	Flush() error
}

var (
	_ RowWriter[FindResult]      = (*CSVOf[FindResult])(nil)
	_ RowWriter[CandidateResult] = (*JSONLOf[CandidateResult])(nil)
)
