#!/usr/bin/env bash
# Runs the real Genesys Cloud SDKs (Python and JavaScript), unmodified, through `callvcr run` against
# the bundled cassette examples/genesys-call.jsonl, strictly: any miss or unused recording fails.
# Installs the SDKs under target/examples on first use (PyPI and npm). Usage: examples/run.sh [python|js]...
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

for sdk in "${which[@]}"; do
  case "$sdk" in
    python)
      if ! PYTHONPATH="$work/py" python3 -c 'import PureCloudPlatformClientV2' 2>/dev/null; then
        echo "examples: installing PureCloudPlatformClientV2 into $work/py"
        python3 -m pip install --quiet --disable-pip-version-check --target "$work/py" PureCloudPlatformClientV2 \
          || python3 -m pip install --quiet --disable-pip-version-check --break-system-packages --target "$work/py" PureCloudPlatformClientV2 \
          || { echo "examples: cannot install the Python SDK"; exit 3; }
      fi
      # The Python SDK ignores HTTPS_PROXY: as root on Linux, redirect it with a private hosts file;
      # elsewhere the example hands it the proxy itself.
      mode=()
      if [ "$(id -u)" = 0 ] && command -v unshare >/dev/null && unshare -m true 2>/dev/null; then mode=(--hosts); fi
      echo "examples: python SDK through callvcr run ${mode[*]:-(proxy)}"
      (cd "$work" && PYTHONPATH="$work/py" "$bin" run "${mode[@]}" --cassette "$cassette" --strict --fail-on-unused \
        -- python3 "$root/examples/python/call_flow.py") || status=$?
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
