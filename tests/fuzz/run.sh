#!/bin/sh
# tests/fuzz/run.sh BUILDDIR SRCDIR SECONDS HARNESS... — run each libFuzzer
# harness for SECONDS on a working copy of its committed seeds
# (SRCDIR/tests/fuzz/corpus/<name>/), and print its execution count.  New
# inputs and crash artefacts go to BUILDDIR/fuzz-out/<name>/.  Exits 1 when
# any harness crashed, leaked, timed out or ran out of memory (its log is
# shown), 0 otherwise.  Called by `make fuzz` and tests/fuzz/smoke.sh.
set -u
b=$1 src=$2 secs=$3
shift 3
status=0 total=0 n=0
for prog in "$@"; do
	name=$(basename "$prog" | sed 's/^fuzz_//')
	out=$b/fuzz-out/$name
	mkdir -p "$out/corpus"
	log=$out/fuzz.log
	# -close_fd_mask=3: the targets' own stdout/stderr (the envdb command
	# prints usage) are closed; libFuzzer keeps its report
	(cd "$out" && "$b/$prog" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 \
		-close_fd_mask=3 -print_final_stats=1 -artifact_prefix="$out/" \
		"$out/corpus" "$src/tests/fuzz/corpus/$name") >"$log" 2>&1
	rc=$?
	execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
	cov=$(grep -E '^#[0-9]+.*(DONE|pulse|NEW)' "$log" | tail -1 | sed -n 's/.*cov: \([0-9]*\).*/\1/p')
	seeds=$(ls "$src/tests/fuzz/corpus/$name" | wc -l)
	if [ $rc -ne 0 ]; then
		echo "fuzz_$name: FAILED (exit $rc) after ${execs:-?} executions; log $log:"
		grep -E 'ERROR|SUMMARY|Test unit written|==[0-9]+==' "$log" | head -30
		status=1
	else
		echo "fuzz_$name: ${execs:-0} executions in ${secs} s, 0 crashes" \
			"(coverage ${cov:-?} edges, $seeds seeds)"
		total=$((total + ${execs:-0}))
	fi
	n=$((n + 1))
done
echo "fuzz: $n harnesses, $total executions, $([ $status -eq 0 ] && echo "no crash" || echo "FAILURES")"
exit $status
