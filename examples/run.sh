#!/usr/bin/env bash
# Runs the real Genesys Cloud SDKs (Python and JavaScript), unmodified, against the bundled cassette
# examples/genesys-call.jsonl. python: the pytest module examples/python, through callvcr's pytest
# plugin (clients/python), which fails a test whose requests miss the cassette; run in order,
# reversed, each test alone and on two xdist workers. js: the node:test file examples/js through
# callvcr's Node helper (clients/node), as declared, reversed, two at a time and each test alone.
# Each also runs its plain SDK script through `callvcr run`, strictly (any miss or unused recording
# fails; Python via a private hosts file when root), and for Python, `callvcr verify` of the SDK's own
# recording from the stand-in sandbox (tests/verify.rs). nice: NICE CXone's own agent SDKs (@nice-devone/*
# 25.1.2, unmodified, examples/nice/agent_flow.mjs) against examples/nice-agent.jsonl, as the node:test
# file examples/nice/agent.test.mjs (proxy mode through the Node helper, and hosts mode through
# `callvcr run --hosts` when root), as declared, reversed and each test alone. Installs the SDKs (and
# pytest with the plugin) under target/examples on first use (PyPI and npm).
# Usage: examples/run.sh [python|js|nice]...
# Exit status: 0 all passed; 3 an SDK could not be installed (no network?); otherwise a failure.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
work="$root/target/examples"
mkdir -p "$work"
bin="${CALLVCR_BIN:-$root/target/debug/callvcr}"
[ -x "$bin" ] || cargo build --quiet --bin callvcr
which=("${@:-python js nice}")
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
      # And the unmodified SDK as a script, through `callvcr run`: the Python SDK ignores HTTPS_PROXY,
      # so as root on Linux it is redirected with a private hosts file; elsewhere the script hands it
      # the proxy itself. Strict: any miss or unused recording fails.
      mode=()
      if [ "$(id -u)" = 0 ] && command -v unshare >/dev/null && unshare -m true 2>/dev/null; then mode=(--hosts); fi
      echo "examples: python SDK script through callvcr run ${mode[*]:-(proxy)}"
      (cd "$work" && PYTHONPATH="$work/py" "$bin" run "${mode[@]}" --cassette "$cassette" --strict --fail-on-unused \
        -- python3 "$root/examples/python/call_flow.py") || status=$?
      # And `callvcr verify` of the SDK's own recording: the same flow recorded from the stand-in
      # sandbox (tests/support) through `callvcr run --record`, then verified against it (zero drift).
      echo "examples: python SDK flow recorded from the stand-in, then callvcr verify against it"
      CALLVCR_PY_SDK="$work/py" cargo test --quiet --locked --test verify -- --ignored --exact \
        the_genesys_python_sdks_own_recording_verifies_with_zero_drift || status=$?
      ;;
    js)
      need=
      for m in purecloud-platform-client-v2 hpagent callvcr; do [ -e "$work/js/node_modules/$m" ] || need=1; done
      if [ -n "$need" ]; then
        echo "examples: installing purecloud-platform-client-v2, hpagent and the Node helper into $work/js"
        mkdir -p "$work/js"
        npm install --silent --no-audit --no-fund --prefix "$work/js" purecloud-platform-client-v2 hpagent "$root/clients/node" >/dev/null \
          || { echo "examples: cannot install the JavaScript SDK"; exit 3; }
      fi
      # The SDK under node:test through the Node helper (one callvcr per test): as declared,
      # reversed, two at a time, and each test alone; run from target/examples, where certs/ lives.
      tests="$root/examples/js/call_flow.test.js"
      js=(env CALLVCR_BIN="$bin" NODE_PATH="$work/js/node_modules")
      spec=(node --test --test-reporter=spec)
      echo "examples: JavaScript SDK under node:test through the Node helper (declared order)"
      (cd "$work" && "${js[@]}" "${spec[@]}" "$tests") || status=$?
      echo "examples: JavaScript SDK, the tests declared in reverse"
      (cd "$work" && "${js[@]}" REVERSE=1 "${spec[@]}" "$tests") || status=$?
      echo "examples: JavaScript SDK, two tests at a time"
      (cd "$work" && "${js[@]}" CONCURRENCY=2 "${spec[@]}" "$tests") || status=$?
      for scenario in 'the flow as recorded' 'the token expires mid-flow' 'the platform rate-limits placing the call once' 'the customer hangs up'; do
        echo "examples: JavaScript SDK, alone: $scenario"
        (cd "$work" && "${js[@]}" "${spec[@]}" --test-name-pattern="^$scenario\$" "$tests") || status=$?
      done
      # And the unmodified SDK as a script, through `callvcr run` (HTTPS_PROXY), strictly.
      echo "examples: JavaScript SDK script through callvcr run (HTTPS_PROXY)"
      (cd "$work" && NODE_PATH="$work/js/node_modules" "$bin" run --cassette "$cassette" --strict --fail-on-unused \
        -- node "$root/examples/js/call_flow.js") || status=$?
      ;;
    nice)
      nice_dir="$work/nice"
      need=
      for m in @nice-devone/auth-sdk @nice-devone/agent-sdk @nice-devone/acd-sdk @nice-devone/core-sdk @nice-devone/common-sdk \
        yup fake-indexeddb ws undici callvcr; do
        [ -e "$nice_dir/node_modules/$m" ] || need=1
      done
      if [ -n "$need" ]; then
        echo "examples: installing NICE CXone's agent SDKs (@nice-devone/* 25.1.2) and the Node helper into $nice_dir"
        mkdir -p "$nice_dir"
        npm install --silent --no-audit --no-fund --prefix "$nice_dir" @nice-devone/auth-sdk@25.1.2 @nice-devone/agent-sdk@25.1.2 \
          @nice-devone/acd-sdk@25.1.2 @nice-devone/core-sdk@25.1.2 @nice-devone/common-sdk@25.1.2 yup@0.32 fake-indexeddb ws undici \
          "$root/clients/node" >/dev/null \
          || { echo "examples: cannot install the NICE SDKs"; exit 3; }
      fi
      # One callvcr per test (the helper in proxy mode, `callvcr run --hosts` in hosts mode); run
      # from target/examples, where certs/ lives. As declared, reversed, and each test alone.
      tests="$root/examples/nice/agent.test.mjs"
      nice=(env CALLVCR_BIN="$bin" NICE_SDK_DIR="$nice_dir")
      spec=(node --test --test-reporter=spec)
      echo "examples: NICE agent SDKs under node:test through callvcr (declared order)"
      (cd "$work" && "${nice[@]}" "${spec[@]}" "$tests") || status=$?
      echo "examples: NICE agent SDKs, the tests declared in reverse"
      (cd "$work" && "${nice[@]}" REVERSE=1 "${spec[@]}" "$tests") || status=$?
      echo "examples: NICE agent SDKs, proxy mode, all three tests at once"
      (cd "$work" && "${nice[@]}" NICE_MODES=proxy CONCURRENCY=3 "${spec[@]}" "$tests") || status=$?
      for mode in proxy hosts; do
        for scenario in 'a contact is accepted' 'an expired access token' 'the platform ends the session early'; do
          echo "examples: NICE agent SDKs, alone: $mode mode, $scenario"
          (cd "$work" && "${nice[@]}" NICE_MODES="$mode" "${spec[@]}" --test-name-pattern="^$scenario" "$tests") || status=$?
        done
      done
      ;;
    *) echo "examples: unknown SDK '$sdk' (python, js or nice)"; exit 2 ;;
  esac
done
exit $status
