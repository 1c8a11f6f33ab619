// Package egress is the one place where bytes leave the machine. It hands the
// probe package its dial function, so every SMTP connection of a run goes out
// through an egress it chose: a direct connection bound to one of the
// machine's source addresses (net.Dialer.LocalAddr), or a SOCKS5 proxy
// (RFC 1928, with RFC 1929 username/password, through golang.org/x/net/proxy).
//
// It owns:
//
//   - the Pool of egresses of a run and its per-egress health: rotation per
//     connection, a proxy (or an unusable source address) that keeps failing
//     taken out of rotation for a growing cool-down, and the record of which
//     operator refused which egress, so that a refused egress is never picked
//     for that operator again and the refusal can be reported (Pick, Refused);
//   - telling apart, for a proxied connection, the proxy failing (*ProxyError)
//     from the proxy reaching out and the target refusing or not answering
//     (*TargetError), so a run can say proxy_failed rather than
//     connection_failed;
//   - the checks made before and during a run: the port-25 preflight
//     (CheckPort25), DNS sanity (CheckDNS) and the Breaker the pipeline feeds
//     with per-host and per-domain outcomes;
//   - the checks of `bulkverify doctor` (Doctor): resolver, port 25, public
//     address, PTR, forward-confirmed reverse DNS, HELO, DNSBL listings, MAIL
//     FROM and SPF.
//
// DNS never goes through an egress: callers resolve MX hosts with the
// resolve package and dial "ip:port", and DialContext refuses host names, so
// a proxy only ever sees addresses. Proxy credentials never leave the
// Egress: names, errors, Stats and String show "socks5://host:port" only.
//
// It leaves to others what a reply means for an address and how many
// connections go to whom (pipeline: operator limits, back-off, which addresses
// to ask again), the SMTP conversation (probe) and flags and printing (cmd).
// Creating a Pool touches no network; nothing is sent until a dial or a check
// is asked for.
package egress
