#!/usr/bin/env bash
# Runs every cargo-fuzz target for a bounded time (default 60 s each), keeping the corpus in
# fuzz/corpus/<target> and any crash in fuzz/artifacts/<target>. cargo-fuzz needs a nightly
# compiler's flags; RUSTC_BOOTSTRAP=1 lets the stable toolchain take them.
# Usage: scripts/fuzz.sh [SECONDS] [TARGET...]
# FUZZ_RUNS=N runs each target for N executions instead (SECONDS is then ignored); see
# scripts/fuzz-deep.sh for the long runs in the background.
# FUZZ_SANITIZER=none builds without AddressSanitizer (default: address). Every target is safe Rust
# on our side, where bounds are checked in any build; ASan only adds checks of unsafe code in
# dependencies, at about a seventh of the speed.
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-60}"
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(client_hello fingerprint proxy_yaml cassette_import ws_frames replay_file)
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
export RUSTC_BOOTSTRAP=1
status=0
for t in "${targets[@]}"; do
  mkdir -p "fuzz/corpus/$t"
  # Seeds: files of the project that are valid inputs for the target.
  case "$t" in
    proxy_yaml) cp proxy.yaml "fuzz/corpus/$t/seed-proxy.yaml" ;;
    cassette_import)
      { printf '\0'; cat examples/genesys-call.jsonl; } > "fuzz/corpus/$t/seed-jsonl"
      { printf '\1'; cat tests/fixtures/devtools-shape.har; } > "fuzz/corpus/$t/seed-har" ;;
    replay_file)
      # A real replay file, written by `cassette import` of the example cassette.
      cargo build --release --quiet
      scratch="$(mktemp -d)"
      (cd "$scratch" && "$OLDPWD/target/release/callvcr" cassette import "$OLDPWD/examples/genesys-call.jsonl" --name seed >/dev/null)
      { printf '\1'; cat "$scratch/cassettes/seed/replay.bin"; } > "fuzz/corpus/$t/seed-replay"
      rm -rf "$scratch" ;;
  esac
  log="target/fuzz-$t.log"
  mkdir -p target
  if [ -n "${FUZZ_RUNS:-}" ]; then bound=(-runs="$FUZZ_RUNS"); else bound=(-max_total_time="$secs"); fi
  started=$(date +%s)
  if cargo fuzz run -O -s "${FUZZ_SANITIZER:-address}" "$t" "fuzz/corpus/$t" -- "${bound[@]}" -print_final_stats=1 -timeout=10 -rss_limit_mb=2048 >"$log" 2>&1; then
    result="no findings"
  else
    result="FINDING (see $log and fuzz/artifacts/$t)"
    status=1
  fi
  execs=$(grep -Eo 'stat::number_of_executed_units: [0-9]+' "$log" | grep -Eo '[0-9]+' || true)
  [ -n "$execs" ] || execs=$(grep -Eo '#[0-9]+' "$log" | tail -1 | tr -d '#')
  corpus=$(find "fuzz/corpus/$t" -type f | wc -l)
  took=$(( $(date +%s) - started ))
  echo "fuzz $t (sanitizer ${FUZZ_SANITIZER:-address}): ${took}s, ${execs:-?} executions, corpus $corpus inputs: $result"
done
exit $status
