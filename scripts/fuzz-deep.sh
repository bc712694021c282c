#!/usr/bin/env bash
# The long fuzz runs (not part of CI): every target to FUZZ_RUNS executions (default 10 million),
# one after another at the lowest CPU priority, in the background. Each target's result line is
# appended to target/fuzz-deep.txt as it finishes; libFuzzer's own output is in
# target/fuzz-<target>.log, any crash in fuzz/artifacts/<target>.
# Usage: scripts/fuzz-deep.sh [TARGET...]
# Built without AddressSanitizer unless FUZZ_SANITIZER says otherwise: 10 million executions take
# about 17 minutes per target that way and two hours with it (see scripts/fuzz.sh).
# Do not pause it with SIGSTOP: libFuzzer counts a stopped input against its -timeout and reports
# a false hang. At the lowest priority it takes little from other work anyway.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p target
out=target/fuzz-deep.txt
runs="${FUZZ_RUNS:-10000000}"
export FUZZ_SANITIZER="${FUZZ_SANITIZER:-none}"
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(client_hello fingerprint replay_file cassette_import ws_frames proxy_yaml)
nohup setsid nice -n 19 bash -c '
  out="$1"; runs="$2"; shift 2
  echo "# $(date -u +%FT%TZ) $(git rev-parse --short HEAD): ${runs} executions per target, sanitizer $FUZZ_SANITIZER" >>"$out"
  for t in "$@"; do
    FUZZ_RUNS="$runs" scripts/fuzz.sh 0 "$t" >>"$out" 2>&1 || true
  done
  echo "# $(date -u +%FT%TZ) done" >>"$out"
' fuzz-deep "$out" "$runs" "${targets[@]}" >/dev/null 2>&1 &
echo "fuzzing in the background (pid $!, process group of its own); results in $out"
