#!/usr/bin/env bash
# The whole test suite: unit tests, real-parts integration tests, doc tests.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test --locked --all-targets "$@"
cargo test --locked --doc "$@"
