#!/bin/sh
# SPDX-License-Identifier: MIT
#
# watchdog.sh SECONDS COMMAND [ARG...]: runs COMMAND and returns its exit
# status.  If it is still running after SECONDS, prints a picture of the
# hang on stderr before killing it (exit 124): every thread's name, wait
# channel, kernel stack and system call, and, where gdb is installed,
# every thread's backtrace.  tests/check_tool.cmake runs the gvm tool
# under it, so that a hang in CI leaves more than a timeout behind.
secs=$1
shift
"$@" &
pid=$!
ticks=0
while kill -0 "$pid" 2>/dev/null; do
	if [ "$ticks" -ge $((secs * 10)) ]; then
		echo "watchdog: still running after $secs s: $*" >&2
		for t in /proc/"$pid"/task/*; do
			echo "== thread $(basename "$t") $(cat "$t"/comm)" \
				"wchan $(cat "$t"/wchan)"
			cat "$t"/stack "$t"/syscall
		done >&2 2>/dev/null
		if command -v gdb >/dev/null 2>&1; then
			timeout 60 gdb -p "$pid" -batch -nx \
				-ex "set pagination off" \
				-ex "thread apply all bt 30" >&2 2>&1 </dev/null
		fi
		kill -9 "$pid" 2>/dev/null
		wait "$pid" 2>/dev/null
		exit 124
	fi
	sleep 0.1
	ticks=$((ticks + 1))
done
wait "$pid"
