#!/usr/bin/env bash
# Records examples/nice-agent.jsonl again, on purpose: NICE CXone's own agent SDKs (agent_flow.mjs,
# unmodified SDKs) through `callvcr run --record`, against the project's stand-in NICE platform
# (standin.mjs), then exports the cassette and audits it. Nothing here reaches the network: every
# NICE name is sent to the stand-in on loopback (--resolve '*=127.0.0.1:PORT').
#
# Usage: examples/nice/record.sh        (from anywhere; writes examples/nice-agent.jsonl)
# Env: CALLVCR_BIN (default target/debug/callvcr). Installs the SDKs under target/examples/nice
# when missing (npm). Exit status: 0 recorded, exported and audited clean; 3 npm could not install;
# otherwise a failure (the stand-in's request log is kept under target/examples/nice-record).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
bin="${CALLVCR_BIN:-$root/target/debug/callvcr}"
[ -x "$bin" ] || { echo "record: no callvcr binary at $bin (build it, or set CALLVCR_BIN)"; exit 2; }
sdk="$root/target/examples/nice"
out="$root/examples/nice-agent.jsonl"
work="$root/target/examples/nice-record"

if [ ! -e "$sdk/node_modules/@nice-devone/agent-sdk" ] || [ ! -e "$sdk/node_modules/callvcr" ]; then
  echo "record: installing the NICE SDKs into $sdk"
  mkdir -p "$sdk"
  npm install --silent --no-audit --no-fund --prefix "$sdk" @nice-devone/auth-sdk@25.1.2 @nice-devone/agent-sdk@25.1.2 \
    @nice-devone/acd-sdk@25.1.2 @nice-devone/core-sdk@25.1.2 @nice-devone/common-sdk@25.1.2 yup@0.32 fake-indexeddb ws undici \
    "$root/clients/node" >/dev/null || { echo "record: cannot install the NICE SDKs"; exit 3; }
fi

rm -rf "$work"
mkdir -p "$work"
standin_pid=
cleanup() { [ -n "$standin_pid" ] && kill "$standin_pid" 2>/dev/null || true; }
trap cleanup EXIT

# 1. The stand-in platform, on a free loopback port; it says where once it listens.
node "$here/standin.mjs" --dir "$work/standin" --ready-file "$work/standin.json" --log "$work/standin-requests.jsonl" \
  >"$work/standin.out" 2>"$work/standin.err" &
standin_pid=$!
for _ in $(seq 300); do
  [ -s "$work/standin.json" ] && break
  kill -0 "$standin_pid" 2>/dev/null || { echo "record: the stand-in exited:"; cat "$work/standin.err"; exit 1; }
  sleep 0.1
done
[ -s "$work/standin.json" ] || { echo "record: the stand-in did not start"; exit 1; }
port=$(node -e 'console.log(JSON.parse(require("fs").readFileSync(process.argv[1], "utf8")).port)' "$work/standin.json")
ca=$(node -e 'console.log(JSON.parse(require("fs").readFileSync(process.argv[1], "utf8")).ca)' "$work/standin.json")
echo "record: stand-in on 127.0.0.1:$port"

# 2. The flow through callvcr, recording. `run` sets HTTPS_PROXY and NODE_EXTRA_CA_CERTS for the
#    flow and stops callvcr (drain, flush, summary) when the flow ends.
(cd "$here" && NICE_SDK_DIR="$sdk" CALLVCR_NO_STATUS=1 "$bin" run --record --cassette nice-agent \
  --cassettes "$work/cassettes" --certs "$work/certs" \
  --resolve "*=127.0.0.1:$port" --upstream-ca "$ca" \
  --listen 127.0.0.1:0 --proxy-listen 127.0.0.1:0 --admin 127.0.0.1:0 \
  -- node --import ./loader.mjs --import ./shims.mjs agent_flow.mjs) 2> "$work/callvcr.log" \
  || { echo "record: the flow failed while recording; callvcr's log:"; tail -40 "$work/callvcr.log"; exit 1; }

# 3. Export (the reviewable JSON Lines form) and audit: no credential may survive in it.
"$bin" cassette export nice-agent --cassettes "$work/cassettes" --out "$out" \
  --note "Recorded through callvcr from the project's own stand-in NICE CXone platform (examples/nice/standin.mjs), not from NICE CXone; NICE's agent SDKs 25.1.2 running examples/nice/agent_flow.mjs."
"$bin" cassette audit "$out"
echo "record: wrote $out ($(wc -l < "$out") lines)"
