package resolve

import (
	"fmt"
	"net"
	"net/netip"
	"strconv"

	"github.com/miekg/dns"
)

// serverList returns the servers to query as "host:port": the explicit
// ones if any, else the nameservers of the resolv.conf file.
func serverList(explicit []string, resolvConf string) ([]string, error) {
	if len(explicit) > 0 {
		out := make([]string, 0, len(explicit))
		for _, s := range explicit {
			addr, err := serverAddr(s, "53")
			if err != nil {
				return nil, err
			}
			out = append(out, addr)
		}
		return out, nil
	}
	conf, err := dns.ClientConfigFromFile(resolvConf)
	if err != nil {
		return nil, fmt.Errorf("resolve: no DNS servers configured and reading %s failed: %w", resolvConf, err)
	}
	out := make([]string, 0, len(conf.Servers))
	for _, s := range conf.Servers {
		addr, err := serverAddr(s, conf.Port)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", resolvConf, err)
		}
		out = append(out, addr)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("resolve: no nameserver line in %s", resolvConf)
	}
	return out, nil
}

// serverAddr accepts "host:port", "[ip]:port" (the form OpenBSD's
// resolv.conf uses for a non-standard port) or a bare IP address, which
// gets defPort.
func serverAddr(s, defPort string) (string, error) {
	if ip, err := netip.ParseAddr(s); err == nil {
		return net.JoinHostPort(ip.String(), defPort), nil
	}
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return "", fmt.Errorf("resolve: invalid DNS server %q: %w", s, err)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return "", fmt.Errorf("resolve: invalid DNS server %q: bad port", s)
	}
	if host == "" {
		return "", fmt.Errorf("resolve: invalid DNS server %q: empty host", s)
	}
	return net.JoinHostPort(host, port), nil
}
