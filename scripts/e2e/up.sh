#!/usr/bin/env bash
# up.sh WORKDIR: start the e2e mail world — nsd serving the zone "test." on
# 127.0.0.1:$E2E_DNS_PORT and a postfix instance listening on
# 127.0.0.{21,22,24,25}:$E2E_SMTP_PORT — with every config, zone, queue, log
# and PID file under WORKDIR. Idempotent: what already runs for WORKDIR is
# left alone. Stop it with down.sh WORKDIR. Needs root.
#
# Environment: E2E_DNS_PORT (default 5300), E2E_SMTP_PORT (default 2525).
# On success WORKDIR/stack.env describes the running world (KEY=value lines).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"

[ $# -eq 1 ] || die "usage: up.sh WORKDIR"
require_root
export PATH="$PATH:/usr/sbin:/sbin"
for bin in nsd postfix postconf openssl; do
	command -v "$bin" >/dev/null || die "$bin not found (apt-get install postfix nsd openssl)"
done

mkdir -p "$1"
work=$(cd "$1" && pwd -P)
check_workdir "$work"

# A world already (partly) running keeps the ports it was started with.
prev_dns= prev_smtp=
if [ -r "$work/stack.env" ]; then
	prev_dns=$(sed -n 's/^DNS_PORT=//p' "$work/stack.env")
	prev_smtp=$(sed -n 's/^SMTP_PORT=//p' "$work/stack.env")
fi
dns_port=${E2E_DNS_PORT:-${prev_dns:-5300}}
smtp_port=${E2E_SMTP_PORT:-${prev_smtp:-2525}}
running=$(nsd_pid "$work")$(postfix_pid "$work")
if [ -n "$running" ] && { [ "$dns_port" != "$prev_dns" ] || [ "$smtp_port" != "$prev_smtp" ]; }; then
	die "already running in $work with DNS port $prev_dns and SMTP port $prev_smtp; run down.sh first"
fi

# The postfix daemons work as the postfix user; they must be able to reach
# their files through every directory above the work directory.
d=$work
while [ "$d" != / ]; do
	d=$(dirname "$d")
	perm=$(stat -c %A "$d")
	case "$perm" in
	*x | *t) ;;
	*) die "$d is not searchable by others ($perm); postfix could not reach $work" ;;
	esac
done

conf=$work/postfix/conf
mkdir -p "$work/nsd/xfr" "$work/log" "$work/tls" "$conf" "$work/postfix/queue" "$work/postfix/data"
# The same for the work directory itself (a test's temp dir is 0700).
chmod 0755 "$work"
chown postfix: "$work/postfix/data"

fill() { # fill TEMPLATE OUT
	sed -e "s|@WORKDIR@|$work|g" -e "s|@DNS_PORT@|$dns_port|g" -e "s|@SMTP_PORT@|$smtp_port|g" "$1" >"$2.tmp"
	mv "$2.tmp" "$2"
}
fill "$here/nsd.conf.in" "$work/nsd/nsd.conf"
cp "$here/test.zone" "$work/nsd/test.zone"
fill "$here/main.cf.in" "$conf/main.cf"
fill "$here/master.cf.in" "$conf/master.cf"
cp "$here/vmailbox" "$here/valias" "$conf/"

# Written before anything starts, so that a later run knows the ports even
# if this one fails half way.
cat >"$work/stack.env.tmp" <<EOF
DNS_ADDR=127.0.0.1:$dns_port
DNS_PORT=$dns_port
SMTP_PORT=$smtp_port
MX1_ADDR=127.0.0.21
MX2_ADDR=127.0.0.22
DOWN_ADDR=127.0.0.23
IMPLICIT_ADDR=127.0.0.24
STRICT_ADDR=127.0.0.25
POSTFIX_CONFIG=$conf
POSTFIX_QUEUE=$work/postfix/queue
POSTFIX_LOG=$work/log/postfix.log
NSD_LOG=$work/log/nsd.log
TLS_CERT=$work/tls/cert.pem
EOF
mv "$work/stack.env.tmp" "$work/stack.env"

if [ ! -s "$work/tls/cert.pem" ] || [ ! -s "$work/tls/key.pem" ]; then
	(umask 077 && openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
		-keyout "$work/tls/key.pem" -out "$work/tls/cert.pem" -days 7 \
		-subj "/CN=mx.e2e.test" -addext "subjectAltName=DNS:mx.e2e.test" 2>"$work/log/openssl.log") ||
		die "openssl could not make the certificate: $(cat "$work/log/openssl.log")"
fi

# wait_tcp ADDR PORT WHAT: poll until something accepts on ADDR:PORT, 10 s at most.
wait_tcp() {
	local i
	for i in $(seq 100); do
		if (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; then
			return 0
		fi
		sleep 0.1
	done
	die "$3 is not listening on $1:$2 after 10 s"
}

# postfix_why CMD: the postfix command's own complaint. Before postlogd runs,
# postfix commands log to syslog (absent here) unless stderr is a terminal,
# so run it again under script(1) to get one.
postfix_why() {
	if command -v script >/dev/null; then
		script -qec "postfix -c $conf $1" /dev/null 2>&1 | tr -d '\r' | grep -E 'fatal|error|warning' || true
	fi
}

if [ -z "$(nsd_pid "$work")" ]; then
	nsd-checkzone test "$work/nsd/test.zone" >/dev/null || die "bad zone file"
	nsd -c "$work/nsd/nsd.conf" || die "nsd did not start; see $work/log/nsd.log"
else
	echo "e2e: nsd already running (pid $(nsd_pid "$work"))"
fi
wait_tcp 127.0.0.1 "$dns_port" nsd

if [ -z "$(postfix_pid "$work")" ]; then
	postfix -c "$conf" check || die "postfix check failed: $(postfix_why check)"
	postfix -c "$conf" start || die "postfix did not start: $(postfix_why start); see $work/log/postfix.log"
else
	echo "e2e: postfix already running (pid $(postfix_pid "$work"))"
fi
for ip in 127.0.0.21 127.0.0.22 127.0.0.24 127.0.0.25; do
	wait_tcp "$ip" "$smtp_port" postfix
done
# The master writes its PID file before it is ready; by now it is.
[ -n "$(postfix_pid "$work")" ] || die "postfix master PID file missing"
[ -n "$(nsd_pid "$work")" ] || die "nsd PID file missing"

echo "e2e: up in $work: DNS 127.0.0.1:$dns_port, SMTP port $smtp_port"
