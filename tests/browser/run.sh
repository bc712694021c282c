#!/usr/bin/env bash
# The web inspector in a real browser: Debian's chromium (headless) driven over the DevTools protocol
# by tests/browser/inspector.mjs, against target/debug/callvcr (CALLVCR_BIN to use another build).
# Prints "browser: N passed, M failed". Exit 0 all passed, 1 a check failed, 3 chromium or node is
# not installed (scripts/test.sh skips that outside CI; .ci/run installs chromium).
# Screenshots of each view: target/browser/screenshots/. BROWSER_VERBOSE=1 logs more; BROWSER_KEEP=1
# keeps the run's directory (callvcr logs, cassette, browser profile).
set -uo pipefail
cd "$(dirname "$0")/../.."
if ! command -v node >/dev/null 2>&1; then
  echo "browser: node is not installed"
  exit 3
fi
chromium=""
for c in "${CHROMIUM:-}" chromium chromium-browser google-chrome google-chrome-stable; do
  [ -n "$c" ] && command -v "$c" >/dev/null 2>&1 && { chromium="$(command -v "$c")"; break; }
done
if [ -z "$chromium" ]; then
  echo "browser: chromium is not installed (apt-get install chromium)"
  exit 3
fi
mkdir -p target/browser
CHROMIUM="$chromium" exec timeout --kill-after=5 120 node tests/browser/inspector.mjs
