#!/usr/bin/env bash
# Tests the pytest plugin against the real callvcr binary. Installs pytest, pytest-xdist and the
# plugin (from this directory, as a user would: `pip install ./clients/python`) into
# target/clients/py with `pip install --target`, so no venv (and no ensurepip) is needed.
# Usage: clients/python/run-tests.sh [pytest args...]  (paths relative to clients/python)   (CALLVCR_BIN defaults to target/debug/callvcr)
# Exit status: pytest's (0 all passed); 2 no binary; 3 pip could not install (no network?).
# The last line reads `clients/python: N passed, M failed`.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
work="$root/target/clients/py"
site="$work/site"
python="${PYTHON:-python3}"
export CALLVCR_BIN="${CALLVCR_BIN:-$root/target/debug/callvcr}"
mkdir -p "$work"

if [ ! -x "$CALLVCR_BIN" ]; then
  echo "clients/python: no callvcr binary at $CALLVCR_BIN (cargo build, or set CALLVCR_BIN)"
  echo "clients/python: 0 passed, 0 failed"
  exit 2
fi

pip_target() {
  # Debian's system Python refuses installs without --break-system-packages, even with --target.
  "$python" -m pip install --quiet --disable-pip-version-check --no-warn-script-location \
    --target "$site" "$@" 2>"$work/pip.err" \
    || "$python" -m pip install --quiet --disable-pip-version-check --no-warn-script-location \
      --break-system-packages --target "$site" "$@" 2>"$work/pip.err"
}

if ! PYTHONPATH="$site" "$python" -c 'import pytest, xdist' 2>/dev/null; then
  echo "clients/python: installing pytest and pytest-xdist into $site"
  pip_target --upgrade "pytest>=7" pytest-xdist || {
    cat "$work/pip.err"; echo "clients/python: cannot install pytest (no network?)"
    echo "clients/python: 0 passed, 0 failed"; exit 3; }
fi
# The plugin itself, every run, so the tests see this checkout. Built outside the source tree.
rm -rf "$site"/callvcr "$site"/callvcr-*.dist-info
rm -rf "$work/src" && mkdir -p "$work/src" && cp -r "$here/pyproject.toml" "$here/README.md" "$here/callvcr" "$work/src/"
pip_target --no-deps "$work/src" || {
  cat "$work/pip.err"; echo "clients/python: cannot install the plugin (no network for setuptools?)"
  echo "clients/python: 0 passed, 0 failed"; exit 3; }

# The real Genesys SDK, when examples/run.sh installed it, makes one more test run for real.
extra="$root/target/examples/py"
export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}"
[ -d "$extra" ] && PYTHONPATH="$PYTHONPATH:$extra"

cd "$here"
results="$work/results.xml"
rm -f "$results"
"$python" -m pytest -p no:cacheprovider -q --junitxml="$results" "$@"
status=$?
counts=$("$python" - "$results" <<'EOF'
import sys, xml.etree.ElementTree as ET
try:
    root = ET.parse(sys.argv[1]).getroot()
except Exception:
    print("0 passed, 0 failed"); sys.exit()
suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
n = lambda k: sum(int(s.get(k, 0)) for s in suites)
failed = n("failures") + n("errors")
print(f"{n('tests') - failed - n('skipped')} passed, {failed} failed")
EOF
)
echo "clients/python: $counts"
exit $status
