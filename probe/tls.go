package probe

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"strings"
)

// TLSMode says whether a session upgrades to TLS with STARTTLS (RFC 3207).
type TLSMode int

const (
	// TLSOpportunistic upgrades when the server advertises STARTTLS and
	// otherwise carries on in plaintext. A refused STARTTLS continues on the
	// same connection; a failed handshake reconnects once without TLS.
	TLSOpportunistic TLSMode = iota
	// TLSRequire fails with a *TLSError when the session cannot be
	// upgraded: STARTTLS not advertised (as by HELO-only servers), refused,
	// or a failed handshake.
	TLSRequire
	// TLSOff never sends STARTTLS.
	TLSOff
)

// String returns the name ParseTLSMode accepts.
func (m TLSMode) String() string {
	switch m {
	case TLSOpportunistic:
		return "opportunistic"
	case TLSRequire:
		return "require"
	case TLSOff:
		return "off"
	}
	return fmt.Sprintf("TLSMode(%d)", int(m))
}

// ParseTLSMode parses "opportunistic", "require" or "off", ignoring case.
func ParseTLSMode(s string) (TLSMode, error) {
	for _, m := range [...]TLSMode{TLSOpportunistic, TLSRequire, TLSOff} {
		if strings.EqualFold(s, m.String()) {
			return m, nil
		}
	}
	return 0, fmt.Errorf("probe: unknown TLS mode %q (want opportunistic, require or off)", s)
}

// TLSError reports, in TLSRequire mode only, that the session could not be
// secured. The connection has been closed (after QUIT where it was still
// usable).
type TLSError struct {
	// Reason is one of "STARTTLS not offered", "STARTTLS refused" or
	// "handshake failed".
	Reason string
	// Err is the cause: a *ReplyError (Command "STARTTLS") for a refusal,
	// the handshake or I/O error for a failed handshake, nil when STARTTLS
	// was not offered.
	Err error
}

func (e *TLSError) Error() string {
	if e.Err == nil {
		return "probe: TLS required: " + e.Reason
	}
	return fmt.Sprintf("probe: TLS required: %s: %v", e.Reason, e.Err)
}

func (e *TLSError) Unwrap() error { return e.Err }

// handshakeError marks a failure after the server agreed to STARTTLS: the
// connection is unusable, and in opportunistic mode Dial reconnects.
type handshakeError struct{ err error }

func (e *handshakeError) Error() string { return e.err.Error() }
func (e *handshakeError) Unwrap() error { return e.err }

// TLS returns the state of the TLS connection, and false when the session is
// not on TLS.
func (s *Session) TLS() (tls.ConnectionState, bool) {
	if s.tls == nil {
		return tls.ConnectionState{}, false
	}
	return *s.tls, true
}

// startTLS runs STARTTLS on a freshly greeted session according to the mode
// (never TLSOff). It returns nil when the session is ready for Mail, with or
// without TLS; a *handshakeError when the server agreed but the handshake
// failed (the session is closed); any other error closes the session too.
func (s *Session) startTLS(ctx context.Context) error {
	require := s.cfg.TLS == TLSRequire
	if !s.Supports("STARTTLS") {
		if require {
			return s.refuseTLS(ctx, &TLSError{Reason: "STARTTLS not offered"})
		}
		return nil
	}
	if err := ctx.Err(); err != nil {
		s.Close()
		return fmt.Errorf("probe: STARTTLS: %w", err)
	}
	r, err := s.exchange(ctx, "STARTTLS", "STARTTLS", s.cfg.CommandTimeout)
	if err != nil {
		return err
	}
	if r.Code != 220 {
		re := &ReplyError{Command: "STARTTLS", Reply: r}
		switch {
		case require:
			return s.refuseTLS(ctx, &TLSError{Reason: "STARTTLS refused", Err: re})
		case s.closed.Load(): // 421
			return re
		}
		// The server is still in the state of the plaintext EHLO (RFC 3207
		// §4), so the session goes on as it is.
		s.trace("* ", "STARTTLS refused, continuing without TLS")
		return nil
	}
	if n := s.br.Buffered(); n > 0 {
		// Bytes after the 220 were sent in plaintext before the handshake,
		// so anyone on the path could have injected them; they must not be
		// read as replies of the protected session (RFC 3207 §6 and the
		// STARTTLS injection flaws of 2011).
		err := fmt.Errorf("probe: server sent %d bytes after its STARTTLS reply", n)
		s.trace("* ", "TLS handshake failed: "+err.Error())
		s.Close()
		return &handshakeError{err}
	}

	tc := tls.Client(s.raw, s.tlsConfig())
	disarm := s.arm(ctx, s.cfg.CommandTimeout)
	err = tc.Handshake()
	disarm()
	if err != nil {
		err = s.fail(ctx, "TLS handshake", err)
		s.trace("* ", "TLS handshake failed: "+err.Error())
		return &handshakeError{err}
	}
	st := tc.ConnectionState()
	s.tls = &st
	s.conn = tc
	s.br = bufio.NewReader(tc)
	s.trace("* ", fmt.Sprintf("TLS handshake done: %s %s", tls.VersionName(st.Version), tls.CipherSuiteName(st.CipherSuite)))
	// RFC 3207 §4.2: forget what was learnt before TLS and greet again.
	return s.greet(ctx)
}

// refuseTLS ends a healthy session that cannot be secured, politely.
func (s *Session) refuseTLS(ctx context.Context, e *TLSError) error {
	if !s.closed.Load() {
		_ = s.Quit(ctx)
	}
	s.Close()
	return e
}

func (s *Session) tlsConfig() *tls.Config {
	var c *tls.Config
	if s.cfg.TLSConfig != nil {
		c = s.cfg.TLSConfig.Clone()
	} else {
		// Authenticating the MX is not the point of opportunistic TLS
		// (RFC 7435); encryption against passive listeners is.
		c = &tls.Config{InsecureSkipVerify: true}
	}
	if s.cfg.TLSServerName != "" {
		c.ServerName = s.cfg.TLSServerName
	}
	return c
}
