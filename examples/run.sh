#!/usr/bin/env bash
# Runs the real Genesys Cloud SDKs (Python and JavaScript), unmodified, against the bundled cassette
# examples/genesys-call.jsonl. python: the pytest module examples/python, through callvcr's pytest
# plugin (clients/python), which fails a test whose requests miss the cassette; run in order,
# reversed, each test alone and on two xdist workers. js: through `callvcr run`, strictly (any miss
# or unused recording fails). Installs the SDKs (and pytest with the plugin) under target/examples on
# first use (PyPI and npm). Usage: examples/run.sh [python|js]...
# Exit status: 0 all passed; 3 an SDK could not be installed (no network?); otherwise a failure.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
work="$root/target/examples"
mkdir -p "$work"
bin="${CALLVCR_BIN:-$root/target/debug/callvcr}"
[ -x "$bin" ] || cargo build --quiet --bin callvcr
which=("${@:-python js}")
which=(${which[*]})
cassette="$root/examples/genesys-call.jsonl"
status=0

pip_target() {
  # Debian's system Python refuses installs without --break-system-packages, even with --target.
  # PIP_ROOT_USER_ACTION: no warning about running as root (an older pip ignores it).
  local dir=$1; shift
  export PIP_ROOT_USER_ACTION=ignore
  python3 -m pip install --quiet --disable-pip-version-check --no-warn-script-location --target "$dir" "$@" \
    || python3 -m pip install --quiet --disable-pip-version-check --no-warn-script-location \
      --break-system-packages --target "$dir" "$@"
}

for sdk in "${which[@]}"; do
  case "$sdk" in
    python)
      if ! PYTHONPATH="$work/py" python3 -c 'import PureCloudPlatformClientV2' 2>/dev/null; then
        echo "examples: installing PureCloudPlatformClientV2 into $work/py"
        pip_target "$work/py" PureCloudPlatformClientV2 || { echo "examples: cannot install the Python SDK"; exit 3; }
      fi
      # pytest, its xdist and reverse plugins, and callvcr's pytest plugin (from clients/python, as a
      # user installs it), in a directory of their own beside the SDK's.
      tools="$work/pytest"
      if ! PYTHONPATH="$tools" python3 -c 'import pytest, xdist, pytest_reverse' 2>/dev/null; then
        echo "examples: installing pytest, pytest-xdist and pytest-reverse into $tools"
        pip_target "$tools" --upgrade "pytest>=7" pytest-xdist pytest-reverse \
          || { echo "examples: cannot install pytest"; exit 3; }
      fi
      # Installed again whenever clients/python changed, so the tests see this checkout's plugin.
      plugin=$(cd "$root/clients/python" && cat pyproject.toml callvcr/*.py | sha256sum | cut -c1-16)
      if [ "$(cat "$tools/.callvcr-plugin" 2>/dev/null)" != "$plugin" ]; then
        rm -rf "$tools"/callvcr "$tools"/callvcr-*.dist-info "$work/plugin-src"
        mkdir -p "$work/plugin-src"
        cp -r "$root/clients/python/pyproject.toml" "$root/clients/python/README.md" "$root/clients/python/callvcr" "$work/plugin-src/"
        pip_target "$tools" --no-deps "$work/plugin-src" || { echo "examples: cannot install the pytest plugin"; exit 3; }
        echo "$plugin" > "$tools/.callvcr-plugin"
      fi
      # The plugin starts callvcr itself and the tests hand the SDK its proxy (configure_genesys),
      # so no `callvcr run` and no hosts file. Four runs: as written, reversed, each test alone,
      # and two xdist workers; the tests are independent only if all four pass.
      py() {
        (cd "$root" && PYTHONPATH="$tools:$work/py" PYTHONDONTWRITEBYTECODE=1 CALLVCR_BIN="$bin" \
          python3 -m pytest -p no:cacheprovider "$@")
      }
      echo "examples: python SDK under pytest and callvcr's plugin (proxy), in order"
      py -q examples/python || status=$?
      echo "examples: python, reversed"
      py -v --reverse examples/python || status=$?
      # Node ids are relative to examples/python, which its pytest.ini makes the rootdir.
      tests=$(py -q --collect-only examples/python | grep '::') || true
      [ -n "$tests" ] || { echo "examples: python: no tests collected"; status=1; }
      for test in $tests; do
        echo "examples: python, alone: $test"
        py -q "examples/python/$test" || status=$?
      done
      echo "examples: python, two xdist workers"
      py -q -n 2 examples/python || status=$?
      ;;
    js)
      if [ ! -d "$work/js/node_modules/purecloud-platform-client-v2" ]; then
        echo "examples: installing purecloud-platform-client-v2 into $work/js"
        mkdir -p "$work/js"
        npm install --silent --no-audit --no-fund --prefix "$work/js" purecloud-platform-client-v2 >/dev/null \
          || { echo "examples: cannot install the JavaScript SDK"; exit 3; }
      fi
      echo "examples: JavaScript SDK through callvcr run (HTTPS_PROXY)"
      (cd "$work" && NODE_PATH="$work/js/node_modules" "$bin" run --cassette "$cassette" --strict --fail-on-unused \
        -- node "$root/examples/js/call_flow.js") || status=$?
      ;;
    *) echo "examples: unknown SDK '$sdk' (python or js)"; exit 2 ;;
  esac
done
exit $status
