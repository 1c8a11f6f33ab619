// Command bulkverify checks, for a large list of e-mail addresses, whether each
// mailbox would accept mail, by asking the domain's own mail exchanger over
// SMTP (EHLO, MAIL FROM, RCPT TO, never DATA).
//
// This package is the CLI only: flags, config loading, wiring, the progress
// bar and exit codes. The work is done by the pipeline package.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

// Exit codes, documented in README.md.
const (
	exitOK          = 0
	exitFatal       = 1
	exitUsage       = 2
	exitInterrupted = 130
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	go func() {
		// The first signal stops the run gracefully (QUIT, flush); a second
		// one is someone who does not want to wait for that.
		<-ctx.Done()
		again := make(chan os.Signal, 1)
		signal.Notify(again, os.Interrupt, syscall.SIGTERM)
		<-again
		fmt.Fprintln(os.Stderr, "bulkverify: interrupted again: exiting now (use --resume to continue)")
		os.Exit(exitInterrupted)
	}()
	code := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

const usage = `bulkverify checks e-mail addresses in bulk by asking their mail exchangers.

Usage:
  bulkverify verify [flags] INPUT.csv     verify the addresses of a CSV file ("-" = stdin)
  bulkverify find [flags] PEOPLE.csv      find the existing address of each person (name + domain)
  bulkverify probe [flags] ADDRESS        ask about one address, optionally showing the SMTP dialogue
  bulkverify doctor [flags]               check DNS, port 25, address, PTR, blocklists, MAIL FROM and SPF
  bulkverify store stats|export|prune|forget   manage the verdict store (what runs remember)
  bulkverify config                       print the documented default config file
  bulkverify patterns                     print the documented default address patterns of find
  bulkverify explain [flags] "550 5.1.1 ..."  show how a server's reply is read, and by which rule
  bulkverify replies                      print the documented built-in rules that read replies
  bulkverify operators                    print the documented table of mail operators and their limits
  bulkverify worker --nats URL [flags]    run a cluster worker (NATS JetStream)
  bulkverify cluster status --nats URL    show a cluster's workers and jobs
  bulkverify help [command]

Run "bulkverify COMMAND -h" for the flags of a command.
`

// run is main without the process: it takes its streams and returns the exit
// code, so tests can drive the real CLI.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return exitUsage
	}
	switch args[0] {
	case "verify":
		return runVerify(ctx, args[1:], stdin, stdout, stderr)
	case "find":
		return runFind(ctx, args[1:], stdin, stdout, stderr)
	case "probe":
		return runProbe(ctx, args[1:], stdout, stderr)
	case "doctor":
		return runDoctor(ctx, args[1:], stdout, stderr)
	case "store":
		return runStore(ctx, args[1:], stdout, stderr)
	case "config":
		return runConfig(stdout, stderr)
	case "patterns":
		return runPatterns(stdout, stderr)
	case "explain":
		return runExplain(args[1:], stdin, stdout, stderr)
	case "operators":
		return runOperators(stdout, stderr)
	case "replies":
		return runReplies(stdout, stderr)
	case "worker":
		return runWorker(ctx, args[1:], stdout, stderr)
	case "cluster":
		return runCluster(ctx, args[1:], stdout, stderr)
	case "help", "-h", "--help", "-help":
		if len(args) > 1 {
			switch args[1] {
			case "verify", "find", "probe", "doctor", "explain", "worker":
				return run(ctx, []string{args[1], "-h"}, stdin, stdout, stderr)
			}
		}
		fmt.Fprint(stdout, usage)
		return exitOK
	default:
		fmt.Fprintf(stderr, "bulkverify: unknown command %q\n\n%s", args[0], usage)
		return exitUsage
	}
}

// usageError is a mistake in how the command was called or in its input
// file; it exits with code 2.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

func exitCode(ctx context.Context, err error) int {
	var ue usageError
	switch {
	case err == nil:
		return exitOK
	case ctx.Err() != nil && errors.Is(err, context.Canceled):
		return exitInterrupted
	case errors.As(err, &ue):
		return exitUsage
	default:
		return exitFatal
	}
}
