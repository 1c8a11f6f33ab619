# Shared by up.sh and down.sh (sourced, not run).

die() {
	echo "e2e: $*" >&2
	exit 1
}

# check_workdir DIR: an absolute path without characters that would need
# quoting in the generated configs.
check_workdir() {
	case "$1" in
	/*) ;;
	*) die "WORKDIR must be an absolute path, got '$1'" ;;
	esac
	case "$1" in
	*[!A-Za-z0-9._/-]*) die "WORKDIR may only hold letters, digits and . _ / -: '$1'" ;;
	esac
}

require_root() {
	[ "$(id -u)" = 0 ] || die "must run as root (postfix and nsd bind and switch users)"
}

# pidfile_pid FILE: the PID recorded in FILE, or nothing.
pidfile_pid() {
	[ -r "$1" ] || return 0
	tr -dc '0-9\n' <"$1" | sed -n '1p'
}

# nsd_pid WORKDIR: the PID of the nsd started for WORKDIR, if it is alive.
# Identity: its command line names our config file, so a stale PID file
# whose number was reused by another process is ignored.
nsd_pid() {
	local pid
	pid=$(pidfile_pid "$1/nsd/nsd.pid")
	[ -n "$pid" ] && [ -r "/proc/$pid/cmdline" ] || return 0
	if tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF -- "$1/nsd/nsd.conf"; then
		echo "$pid"
	fi
}

# postfix_pid WORKDIR: the PID of the postfix master started for WORKDIR, if
# alive. Identity: the master runs in its queue directory.
postfix_pid() {
	local pid cwd
	pid=$(pidfile_pid "$1/postfix/queue/pid/master.pid")
	[ -n "$pid" ] && [ -e "/proc/$pid" ] || return 0
	cwd=$(readlink "/proc/$pid/cwd" 2>/dev/null) || return 0
	if [ "$cwd" = "$1/postfix/queue" ]; then
		echo "$pid"
	fi
}

# starttime PID: when PID started (field 22 of /proc/PID/stat), which tells
# a process from a later one that reuses its number.
starttime() {
	local rest
	rest=$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null) || return 0
	set -- $rest
	echo "${20:-}"
}

# children PID: the direct children of PID as "pid:starttime" words.
children() {
	local parent=$1 f rest pid
	for f in /proc/[0-9]*/stat; do
		# After the command name in parentheses come the state and the
		# parent PID; the name may hold spaces, so cut after the last ") ".
		rest=$(sed 's/.*) //' "$f" 2>/dev/null) || continue
		set -- $rest
		if [ "${2:-}" = "$parent" ]; then
			pid=${f#/proc/}
			echo "${pid%/stat}:${20:-}"
		fi
	done
}

# same_procs "PID:STARTTIME ...": the PIDs among them still alive and still
# the same process.
same_procs() {
	local k
	for k in $1; do
		if alive "${k%%:*}" && [ "$(starttime "${k%%:*}")" = "${k#*:}" ]; then
			echo "${k%%:*}"
		fi
	done
}

# alive PID: PID exists and is not a zombie waiting to be reaped.
alive() {
	local state
	state=$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null) || return 1
	[ -n "$state" ] && [ "${state%% *}" != Z ]
}

# stop_pid PID NAME: SIGTERM, wait up to 10 s, then SIGKILL PID; then
# SIGKILL any child it had that outlives it by 2 s (it should have taken them
# down with it).
stop_pid() {
	local pid=$1 name=$2 kids k i
	kids=$(children "$pid")
	kill -TERM "$pid" 2>/dev/null || return 0
	for i in $(seq 100); do
		alive "$pid" || break
		sleep 0.1
	done
	if alive "$pid"; then
		echo "e2e: $name (pid $pid) ignored SIGTERM, killing it" >&2
		kill -KILL "$pid" 2>/dev/null || true
	fi
	# The children got SIGTERM from their parent; give them 2 s.
	for i in $(seq 20); do
		[ -n "$(same_procs "$kids")" ] || break
		sleep 0.1
	done
	for k in $(same_procs "$kids"); do
		kill -KILL "$k" 2>/dev/null || true
	done
	echo "e2e: stopped $name (pid $pid)"
}
