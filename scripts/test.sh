#!/usr/bin/env bash
# The whole test suite: doc tests, unit tests, real-parts integration tests, and the benchmark as
# a short smoke run. Ends with one "N passed, N failed" line summing every test runner's result.
set -uo pipefail
cd "$(dirname "$0")/.."
log="$(mktemp)"
status=0
cargo test --locked --doc "$@" 2>&1 | tee -a "$log" || status=1
[ "${PIPESTATUS[0]}" -eq 0 ] || status=1
cargo test --locked --all-targets "$@" 2>&1 | tee -a "$log" || status=1
[ "${PIPESTATUS[0]}" -eq 0 ] || status=1
passed=$(grep -E '^test result:' "$log" | sed -E 's/.* ([0-9]+) passed.*/\1/' | awk '{s+=$1} END {print s+0}')
failed=$(grep -E '^test result:' "$log" | sed -E 's/.* ([0-9]+) failed.*/\1/' | awk '{s+=$1} END {print s+0}')
rm -f "$log"
echo
echo "tests: $passed passed, $failed failed"
exit $status
