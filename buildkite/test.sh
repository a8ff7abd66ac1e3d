#!/usr/bin/env bash
# Every test of the workspace (unit, integration, end-to-end against a throwaway PostgreSQL).
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$MERIDIAN_ROOT"

cargo test --workspace --locked --all-targets
