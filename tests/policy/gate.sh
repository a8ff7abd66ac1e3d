#!/usr/bin/env bash
# The Buildkite latency gate, run here for real: the `slo-gate` step's own command line, taken
# from buildkite/pipeline.yml, against a locally started `meridian serve` with its sample data
# (calls' hospital switchboard +46101110099, which the gated decision calls). Every service is
# gated on its hot route from buildkite/slo.yaml: streams on a start + stop cycle, calls on a
# signed decision, learning on an item read, attendance on /visits and a sign-in cycle at its
# probe site, playlists on a create/add/next/delete cycle as the user slo-probe. The gate must
# pass on the healthy platform, and fail naming the service
# when a slow route is injected (FAULT_DELAY_MS on the streams routes), when its token is
# refused (streams, with the 401/403s) and when its webhook signature is refused (calls).
#
# The probe identity: where the pipeline fetches a client-credentials token from Cognito, here
# `meridian token --sub slo-probe --scope ...` (the client's scopes) mints one with serve's dev key, and
# the step reads it from SLO_PROBE_TOKEN_FILE, the same file-based path the pipeline hands to
# slo-gate. The webhook secret: where staging's CALLS_WEBHOOK_SECRETS has a `slo-probe` entry
# and the pipeline reads its secret from SLO_PROBE_WEBHOOK_SECRET, here a random secret is given
# to serve the same way (CALLS_WEBHOOK_SECRETS=slo-probe:<secret>) and to the step as
# SLO_PROBE_WEBHOOK_SECRET_FILE. serve and token share a throwaway XDG_STATE_HOME, so the
# user's dev key and state are neither used nor touched.
#
#   tests/policy/gate.sh            (tests/run calls it after building the workspace)
#
# Needs the debug binaries `meridian` and `slo-gate` in ${CARGO_TARGET_DIR:-target}/debug and
# the policy venv (tests/policy/delivery.sh creates it) for its YAML parser (ruamel.yaml, which
# check-jsonschema brings).
set -euo pipefail
cd "$(dirname "$0")/../.."

die() { printf 'gate: FAIL: %s\n' "$*" >&2; exit 1; }
bin_dir="${CARGO_TARGET_DIR:-target}/debug"
meridian="$bin_dir/meridian"
gate_bin="$bin_dir/slo-gate"
py="${MERIDIAN_CACHE:-$HOME/.cache/meridian}/venv/bin/python"
[[ -x "$meridian" ]] || die "$meridian missing: cargo build --workspace --bins"
[[ -x "$gate_bin" ]] || die "$gate_bin missing: cargo build --workspace --bins"
[[ -x "$py" ]] || die "$py missing: run tests/policy/delivery.sh first (it creates the venv)"

# The command of the step keyed "slo-gate", exactly as Buildkite would run it.
step_cmd=$("$py" - <<'PY'
import sys
from ruamel.yaml import YAML
steps = YAML(typ="safe").load(open("buildkite/pipeline.yml"))["steps"]
cmds = [s.get("command") for s in steps if isinstance(s, dict) and s.get("key") == "slo-gate"]
if len(cmds) != 1 or not isinstance(cmds[0], str):
    sys.exit("pipeline.yml must have exactly one step keyed slo-gate with a single command")
print(cmds[0])
PY
) || die "could not read the slo-gate step from buildkite/pipeline.yml"
staging_url=$(grep -oE 'https?://[^ ]+' <<<"$step_cmd" | head -n1)
[[ -n "$staging_url" ]] || die "the slo-gate step names no base URL: $step_cmd"

pid=""
stop() { if [[ -n "$pid" ]]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; pid=""; fi; }
work="$(umask 077 && mktemp -d)"
trap 'stop; rm -rf "$work"' EXIT
export XDG_STATE_HOME="$work/state"
token_file="$work/slo-probe.token"
random_secret() { "$py" -c 'import secrets; print(secrets.token_hex(32))'; }
# The `slo-probe` provider's webhook secret, as staging would have it in CALLS_WEBHOOK_SECRETS.
secret_file="$work/webhook.secret"
(umask 077 && random_secret >"$secret_file")

serve() { # serve [ENV=VALUE ...]: start meridian (sample data loaded) on a free port, wait until ready, set $base
  local port
  port=$("$py" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  (
    # Exported in this subshell, not passed as an argument: the secret is on no command line.
    CALLS_WEBHOOK_SECRETS="slo-probe:$(<"$secret_file")"
    export CALLS_WEBHOOK_SECRETS
    exec env "$@" RUST_LOG=warn "$meridian" serve --port "$port" >/dev/null 2>&1
  ) &
  pid=$!
  base="http://127.0.0.1:$port"
  for _ in $(seq 1 300); do
    curl -fs "$base/readyz" >/dev/null 2>&1 && return 0
    kill -0 "$pid" 2>/dev/null || die "meridian serve exited during start-up"
    sleep 0.2
  done
  die "meridian serve did not become ready"
}

run_gate() { # run_gate [TOKEN_FILE [WEBHOOK_SECRET_FILE]]: the pipeline's command with the staging URL replaced by the local one
  local cmd="${step_cmd//$staging_url/$base}" tokens="${1:-$token_file}" secret="${2:-$secret_file}"
  echo "gate: running: SLO_GATE_BIN=$gate_bin SLO_PROBE_TOKEN_FILE=$tokens SLO_PROBE_WEBHOOK_SECRET_FILE=$secret $cmd"
  SLO_GATE_BIN="$gate_bin" SLO_PROBE_TOKEN_FILE="$tokens" SLO_PROBE_WEBHOOK_SECRET_FILE="$secret" bash -c "$cmd"
}

passed=0 failed=0
serve
# The slo-probe identity's token, minted with the key serve has just created (and trusts).
(umask 077 && "$meridian" token --sub slo-probe --scope streams:sessions --scope attendance:read \
  --scope attendance:site-slo-probe --scope playlists:user-slo-probe --ttl 1h >"$token_file") ||
  die "meridian token failed"
[[ -s "$token_file" ]] || die "meridian token printed nothing"
if run_gate; then passed=$((passed + 1)); echo "gate: ok: passes against a healthy platform"
else failed=$((failed + 1)); echo "gate: FAIL: breached against a healthy platform"; fi

# A token the platform does not accept (not signed by its key): streams, learning, attendance
# and playlists answer 401 to every probe, and the gate must fail on them rather than count
# refusals as answers.
(umask 077 && printf 'not.a.token\n' >"$work/refused.token")
if out=$(run_gate "$work/refused.token" 2>&1); then
  failed=$((failed + 1)); echo "$out"; echo "gate: FAIL: passed with a token the platform refuses"
elif grep -q 'for: \*\*streams learning attendance playlists\*\*' <<<"$out" && grep -q '401/403' <<<"$out"; then
  passed=$((passed + 1)); echo "gate: ok: fails with a refused token, naming streams, learning, attendance and playlists and the 401/403s"
else
  failed=$((failed + 1)); echo "$out"; echo "gate: FAIL: failed, but without naming streams, learning, attendance and playlists and the 401/403s"
fi

# A webhook secret the platform does not have for `slo-probe`: calls refuses every signed
# decision (401), and the gate must fail naming calls.
(umask 077 && random_secret >"$work/wrong-webhook.secret")
if out=$(run_gate "$token_file" "$work/wrong-webhook.secret" 2>&1); then
  failed=$((failed + 1)); echo "$out"; echo "gate: FAIL: passed with a webhook secret calls refuses"
elif grep -q 'for: \*\*calls\*\*' <<<"$out" && grep -q 'to a signed request' <<<"$out"; then
  passed=$((passed + 1)); echo "gate: ok: fails with a refused webhook signature, naming calls (and only calls)"
else
  failed=$((failed + 1)); echo "$out"; echo "gate: FAIL: failed, but without naming calls and the refused signature"
fi
stop

serve FAULT_DELAY_MS=250 FAULT_PATH_PREFIX=/streams/
if out=$(run_gate 2>&1); then
  failed=$((failed + 1)); echo "$out"; echo "gate: FAIL: passed although /streams/ answers 250 ms slower"
elif grep -q 'for: \*\*streams\*\*' <<<"$out"; then
  passed=$((passed + 1)); echo "gate: ok: fails with the slow route injected, naming streams (and only streams)"
else
  failed=$((failed + 1)); echo "$out"; echo "gate: FAIL: failed, but without naming streams"
fi
stop

echo "gate: $passed passed, $failed failed"
[[ $failed -eq 0 ]]
