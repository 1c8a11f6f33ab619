package egress

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

var (
	// ErrNotAnAddress is wrapped by the error of a dial to anything but
	// "ip:port": names are resolved by the caller with our resolver, never by
	// the system or a proxy.
	ErrNotAnAddress = errors.New("egress: dial target must be an IP address and port")
	// ErrAddressFamily is wrapped by the error of a dial from a source
	// address of one IP family to a target of the other. It says nothing
	// about the target or the egress and is not counted against either.
	ErrAddressFamily = errors.New("egress: source and target address families differ")

	// ErrProxyAuth means the proxy refused our username and password.
	ErrProxyAuth = errors.New("proxy refused the username/password")
	// ErrProxyNeedsAuth means the proxy accepts none of the authentication
	// methods offered: it wants credentials we did not give (or another
	// method than username/password).
	ErrProxyNeedsAuth = errors.New("proxy accepts none of our authentication methods (does it need user:password?)")
	// ErrNotSOCKS5 means the proxy's answer was not SOCKS version 5.
	ErrNotSOCKS5 = errors.New("answer is not SOCKS5")
)

// ProxyError reports that a SOCKS5 proxy itself failed: it could not be
// reached, hung up or answered garbage during the handshake, refused our
// credentials, or refused the request for reasons of its own (general
// failure, "not allowed by ruleset", unsupported command or address type).
// It counts against the proxy's health. Proxy is the egress name: it never
// holds the credentials.
type ProxyError struct {
	Proxy string // egress name, "socks5://host:port"
	Step  string // "connect" (reaching the proxy), "greeting", "auth" or "request"
	Code  int    // the SOCKS reply code when Step is "request" and the proxy sent one, else 0
	Err   error
}

func (e *ProxyError) Error() string {
	msg := "egress: proxy " + e.Proxy + " failed"
	if e.Step != "" {
		msg += " at " + e.Step
	}
	if e.Code != 0 {
		msg += fmt.Sprintf(" (SOCKS reply %d)", e.Code)
	}
	if e.Err != nil {
		msg += ": " + e.Err.Error()
	}
	return msg
}

func (e *ProxyError) Unwrap() error { return e.Err }

// TargetError reports that a proxy worked but could not reach the target for
// us: the target refused the connection (SOCKS reply 5), was unreachable (3,
// 4, 6), or the proxy was still trying when our connect timeout ran out (Code
// 0). Err is the matching syscall errno (ECONNREFUSED, EHOSTUNREACH,
// ENETUNREACH) or the timeout error, so errors.Is and net.Error checks treat
// it like the same failure of a direct connection. It does not count against
// the proxy.
type TargetError struct {
	Proxy string // egress name
	Addr  string // the target "ip:port"
	Code  int    // SOCKS reply code; 0 for a timeout waiting for the reply
	Err   error
}

func (e *TargetError) Error() string {
	if e.Code == 0 {
		return fmt.Sprintf("egress: via %s: %s did not answer in time: %v", e.Proxy, e.Addr, e.Err)
	}
	return fmt.Sprintf("egress: via %s: %s: %v (SOCKS reply %d)", e.Proxy, e.Addr, e.Err, e.Code)
}

func (e *TargetError) Unwrap() error { return e.Err }

// BindError reports that a direct egress cannot send from its source address
// (typically EADDRNOTAVAIL: the address is not configured on this machine).
// It counts against the egress's health like a ProxyError.
type BindError struct {
	Source string // the source address
	Err    error
}

func (e *BindError) Error() string {
	return "egress: cannot send from " + e.Source + " (is the address configured on this machine?): " + e.Err.Error()
}

func (e *BindError) Unwrap() error { return e.Err }

// Refusal records that an operator refused an egress: its server said our
// address is blocked (a DNSBL listing, "banned sending IP", ...).
type Refusal struct {
	Egress   string    `json:"egress"`   // egress name
	Operator string    `json:"operator"` // as the pipeline names it, lower-case
	Reason   string    `json:"reason"`   // the server's words or a summary, as given to Refused
	At       time.Time `json:"at"`       // when it was first recorded
}

// RefusedError is Pick's answer when every usable egress has been refused by
// the operator: its addresses must not be asked from anywhere this run.
type RefusedError struct {
	Operator string
	Refusals []Refusal // one per refused egress, in pool order
}

func (e *RefusedError) Error() string {
	parts := make([]string, len(e.Refusals))
	for i, r := range e.Refusals {
		parts[i] = r.Egress + ": " + r.Reason
	}
	return fmt.Sprintf("egress: every egress is refused by %s (%s); the block is respected, not routed around",
		e.Operator, strings.Join(parts, "; "))
}

// UnavailableError is Pick's answer when no egress can be used now for
// another reason than refusals: all are cooling down after failures, or
// disabled for the run.
type UnavailableError struct {
	Until    time.Time // when the first cool-down ends; zero when none will (all disabled)
	Egresses []string  // "name (state)" of each egress not refused
}

func (e *UnavailableError) Error() string {
	msg := "egress: no egress usable now: " + strings.Join(e.Egresses, ", ")
	if !e.Until.IsZero() {
		msg += "; the first comes back at " + e.Until.Format(time.RFC3339)
	}
	return msg
}
