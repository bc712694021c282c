#!/usr/bin/env bash
# Tests of the Node helper against the real callvcr binary (built elsewhere: this builds nothing).
# Installs the dev dependencies into clients/node/node_modules, runs test/*.test.mjs with
# node --test, and ends with "clients/node: N passed, M failed".
# Exit codes: 0 all passed; 1 a test failed; 2 no binary or no node/npm; 3 npm could not install.
set -uo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
cd "$here"

# The binary: CALLVCR_BIN as given (relative to the repository root), else the debug build.
bin="${CALLVCR_BIN:-target/debug/callvcr}"
case "$bin" in /*) ;; *) bin="$repo/$bin" ;; esac
if [ ! -x "$bin" ]; then
  echo "clients/node: no callvcr binary at $bin (build it, or set CALLVCR_BIN)" >&2
  echo "clients/node: 0 passed, 0 failed"
  exit 2
fi
export CALLVCR_BIN="$bin"

for tool in node npm; do
  if ! command -v "$tool" >/dev/null; then
    echo "clients/node: $tool is not installed" >&2
    echo "clients/node: 0 passed, 0 failed"
    exit 2
  fi
done

# No lockfile is kept (package-lock.json is ignored): the dev dependencies are test tools only.
if ! npm install --no-audit --no-fund --no-package-lock --prefer-offline --loglevel=error >npm-install.log 2>&1; then
  cat npm-install.log >&2
  rm -f npm-install.log
  echo "clients/node: npm could not install the dependencies" >&2
  echo "clients/node: 0 passed, 0 failed"
  exit 3
fi
rm -f npm-install.log

# Spec output for people, TAP to a file for the counts. CALLVCR_ADMIN and friends are dropped, so
# a run under `callvcr run` does not make the tests attach to that process.
tap="$(mktemp)"
trap 'rm -f "$tap"' EXIT
env -u CALLVCR_ADMIN -u CALLVCR_PROXY -u CALLVCR_CA \
  timeout 300 node --test \
  --test-reporter=spec --test-reporter-destination=stdout \
  --test-reporter=tap --test-reporter-destination="$tap" \
  test/*.test.mjs
status=$?

count() { sed -n "s/^# $1 \([0-9]*\)$/\1/p" "$tap" | tail -1; }
passed="$(count pass)"; failed="$(count fail)"; skipped="$(count skipped)"
passed="${passed:-0}"; failed="${failed:-0}"
if [ "$status" -ne 0 ] && [ "$failed" -eq 0 ]; then
  # node --test itself failed (a file that did not load, the time bound): count it.
  failed=1
fi
[ "${skipped:-0}" -gt 0 ] && echo "clients/node: ${skipped} skipped"
echo "clients/node: ${passed} passed, ${failed} failed"
[ "$status" -eq 0 ] && [ "$failed" -eq 0 ]
