package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"

	"github.com/bulkverify/bulkverify/configs"
	"github.com/bulkverify/bulkverify/operator"
	"github.com/bulkverify/bulkverify/probe"
	"github.com/bulkverify/bulkverify/verdict"
)

// maxExplainInput bounds what explain reads from stdin: a reply, not a
// mailbox.
const maxExplainInput = 1 << 20

// runExplain prints how the reply table reads one reply: the decision, the
// rule that made it, where that rule comes from, why it matched, and the
// rules that came close.
func runExplain(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("explain", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		configPath = fs.String("config", os.Getenv("BULKVERIFY_CONFIG"), "config `FILE` whose replies.file is used (default $BULKVERIFY_CONFIG)")
		replies    = fs.String("replies", "", "your rules for reading replies, tried before the built-in ones (`FILE`; overrides replies.file)")
		stage      = fs.String("stage", string(verdict.StageRcpt), "the command the reply answered (`STAGE`): banner, ehlo, mail or rcpt")
		opName     = fs.String("operator", "", "the operator running the mail exchanger (`NAME`), as the operator table names it: google, microsoft, yahoo, ...")
		mxHost     = fs.String("mx", "", "the mail exchanger that sent the reply (`HOST`); its operator is looked up in the operator table")
		operators  = fs.String("operators", "", "your operator table (`FILE`), over the built-in one (overrides operators.file)")
	)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: bulkverify explain [flags] REPLY [MORE-LINES...]\n\n"+
			"Shows how bulkverify reads a mail server's reply: the verdict, the rule that\n"+
			"decided it and where that rule comes from, why it matched, and the rules that\n"+
			"came close. REPLY is the reply as the server sent it, e.g. \"550 5.1.1 no such\n"+
			"user\"; a reply of several lines is given as several arguments, as one argument\n"+
			"with line breaks, or on standard input with \"-\". Lines may be given with or\n"+
			"without the \"-\" after the code that marks a line with more to follow.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitUsage
	}
	fail := func(err error) int {
		fmt.Fprintf(stderr, "bulkverify explain: %v\n", err)
		return exitUsage
	}
	text := strings.Join(fs.Args(), "\n")
	if fs.NArg() == 1 && fs.Arg(0) == "-" {
		data, err := io.ReadAll(io.LimitReader(stdin, maxExplainInput+1))
		if err != nil {
			return fail(fmt.Errorf("reading the reply: %w", err))
		}
		if len(data) > maxExplainInput {
			return fail(fmt.Errorf("the reply on standard input is longer than %d bytes", maxExplainInput))
		}
		text = string(data)
	}
	if strings.TrimSpace(text) == "" {
		fs.Usage()
		return exitUsage
	}
	reply, err := probe.ParseReply(continuationMarks(text))
	if err != nil {
		return fail(err)
	}
	st := verdict.Stage(strings.ToLower(*stage))
	if !slices.Contains(verdict.Stages(), st) {
		return fail(fmt.Errorf("--stage %q: want banner, ehlo, mail or rcpt", *stage))
	}
	file, opFile := *replies, *operators
	if *configPath != "" {
		cfg, err := configs.Load(*configPath)
		if err != nil {
			return fail(err)
		}
		if file == "" {
			file = cfg.Replies.File
		}
		if opFile == "" {
			opFile = cfg.Operators.File
		}
	}
	table, err := verdict.Load(file)
	if err != nil {
		return fail(err)
	}
	if *mxHost != "" {
		if *opName != "" {
			return fail(errors.New("give --operator or --mx, not both"))
		}
		ops, err := operator.Load(opFile)
		if err != nil {
			return fail(err)
		}
		if op := ops.Lookup(*mxHost); !op.Own() {
			*opName = op.Name
		}
	}
	e := table.Explain(verdict.Input{Reply: reply, Stage: st, Operator: *opName})
	printExplanation(&escapingWriter{w: stdout}, table, reply, st, *opName, e)
	return exitOK
}

// continuationMarks rewrites the lines of a pasted reply so that every line
// but the last says "more follows" ("550-") and the last does not ("550 "):
// bounce messages often lose the marks.
func continuationMarks(text string) string {
	var lines []string
	for _, l := range strings.Split(strings.ReplaceAll(text, "\r\n", "\n"), "\n") {
		if l = strings.TrimRight(l, " \t\r"); l != "" {
			lines = append(lines, strings.TrimLeft(l, " \t"))
		}
	}
	for i, l := range lines {
		if len(l) < 4 || (l[3] != ' ' && l[3] != '-') {
			continue // left for the parser to refuse, or a bare "250"
		}
		mark := byte('-')
		if i == len(lines)-1 {
			mark = ' '
		}
		lines[i] = l[:3] + string(mark) + l[4:]
	}
	return strings.Join(lines, "\n")
}

func printExplanation(w io.Writer, t *verdict.Table, r probe.Reply, st verdict.Stage, operator string, e verdict.Explanation) {
	field := func(name, value string) {
		if name != "" {
			name += ":"
		}
		fmt.Fprintf(w, "%-9s %s\n", name, value)
	}
	for i, l := range r.Lines {
		name := "reply"
		if i > 0 {
			name = ""
		}
		prefix := fmt.Sprintf("%d", r.Code)
		if r.Enhanced != "" && i == 0 {
			prefix += " " + r.Enhanced
		}
		field(name, prefix+" "+l)
	}
	enh := r.Enhanced
	if enh == "" {
		enh = "none"
	}
	field("enhanced", enh)
	field("stage", string(st))
	if operator == "" {
		operator = "not given"
	}
	field("operator", operator)
	field("status", e.Status)
	field("reason", e.Reason)
	if e.Detail != "" {
		field("detail", e.Detail)
	}
	if e.RuleID == "" {
		field("rule", "none matched: a reply no rule reads is unknown/rejected")
	} else {
		info, _ := t.Rule(e.RuleID)
		origin := info.Origin
		switch {
		case origin == "":
			origin = "your rules"
		case origin != "built-in":
			origin = fmt.Sprintf("%s, line %d", origin, info.Line)
		}
		field("rule", fmt.Sprintf("%s (%s)", e.RuleID, origin))
		if info.Source != "" {
			field("source", info.Source)
		}
		if info.Note != "" {
			field("note", info.Note)
		}
	}
	field("why", e.Why)
	for i, n := range e.Near {
		name := "close"
		if i > 0 {
			name = ""
		}
		field(name, fmt.Sprintf("%s would say %s, but %s", n.RuleID, n.Reason, n.Failed))
	}
}

// runReplies prints the documented built-in reply rules, a starting point
// for a user's own file.
// runOperators prints the documented built-in operator table.
func runOperators(stdout, stderr io.Writer) int {
	if _, err := stdout.Write(configs.DefaultOperatorsYAML()); err != nil {
		fmt.Fprintf(stderr, "bulkverify: %v\n", err)
		return exitFatal
	}
	return exitOK
}

func runReplies(stdout, stderr io.Writer) int {
	if _, err := stdout.Write(configs.DefaultRepliesYAML()); err != nil {
		fmt.Fprintf(stderr, "bulkverify: %v\n", err)
		return exitFatal
	}
	return exitOK
}
