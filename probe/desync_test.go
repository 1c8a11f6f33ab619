package probe

import (
	"context"
	"errors"
	"strings"
	"testing"
)

// A server that sends one reply too many must not get its replies paired
// with the wrong commands: the client notices the extra bytes, closes and
// hands back no reply it cannot place.
func TestReplyOutOfStep(t *testing.T) {
	tests := []struct {
		name   string
		script func(p *peer)
		ask    func(ctx context.Context, s *Session) ([]Reply, error)
	}{
		{
			name: "pipelined group answered once too often",
			script: func(p *peer) {
				p.greet("PIPELINING")
				for _, want := range []string{"RSET", "MAIL FROM:<>", "RCPT TO:<a@x.test>", "RCPT TO:<b@x.test>"} {
					if !p.expect(want) {
						return
					}
				}
				// Two replies to RSET, then one per command: the last
				// RCPT's reply is left over.
				p.send("250 2.0.0 ok\r\n250 2.0.0 ok\r\n250 2.1.0 ok\r\n550 5.1.1 a unknown\r\n250 2.1.5 b ok\r\n")
				p.drain()
			},
			ask: func(ctx context.Context, s *Session) ([]Reply, error) {
				tr, err := s.Transaction(ctx, true, false, []string{"a@x.test", "b@x.test"})
				return tr.Rcpts, err
			},
		},
		{
			name: "lock-step reply too many before the next command",
			script: func(p *peer) {
				p.greet()
				if !p.expect("RSET") {
					return
				}
				p.send("250 2.0.0 ok\r\n250 2.0.0 ok\r\n")
				p.drain()
			},
			ask: func(ctx context.Context, s *Session) ([]Reply, error) {
				tr, err := s.Transaction(ctx, true, false, []string{"a@x.test"})
				if tr.Mail.Code != 0 {
					return nil, errors.New("MAIL got a reply: the second reply to RSET was taken for it")
				}
				return tr.Rcpts, err
			},
		},
		{
			name: "unasked reply before a batch",
			script: func(p *peer) {
				p.greet("PIPELINING")
				if !p.expect("MAIL FROM:<>") {
					return
				}
				p.send("250 2.1.0 ok\r\n250 2.1.0 ok again\r\n")
				p.drain()
			},
			ask: func(ctx context.Context, s *Session) ([]Reply, error) {
				if r, err := s.Mail(ctx, false); err != nil || r.Code != 250 {
					return nil, errors.New("MAIL failed")
				}
				return s.RcptBatch(ctx, []string{"a@x.test"})
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			addr := serve(t, tt.script)
			s := dial(t, addr, testConfig())
			replies, err := tt.ask(context.Background(), s)
			var pe *ProtocolError
			if !errors.As(err, &pe) || !strings.Contains(pe.Reason, "out of step") {
				t.Fatalf("err = %v, want a ProtocolError about replies out of step", err)
			}
			if len(replies) != 0 {
				t.Errorf("%d replies handed back from a conversation out of step: %v", len(replies), replies)
			}
			if !s.Closed() {
				t.Error("the session is still open")
			}
		})
	}
}
