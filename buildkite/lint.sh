#!/usr/bin/env bash
# Lint everything: Rust formatting and clippy, then the delivery policy checks
# (pipeline schema, shellcheck, hadolint, promtool, runbook links).
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$MERIDIAN_ROOT"

cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
bash tests/policy/delivery.sh
if [[ -f tests/policy/terraform.sh ]]; then
  bash tests/policy/terraform.sh
fi
