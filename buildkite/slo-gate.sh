#!/usr/bin/env bash
# Latency SLO gate (the pipeline runs it against staging): one `slo-gate` probe per service,
# thresholds from slo.yaml.
#
#   buildkite/slo-gate.sh [--print] [--file SLO_YAML] [--label NAME] BASE_URL [SERVICE...]
#
# BASE_URL  where the services answer, e.g. https://staging.meridian.internal or
#           http://127.0.0.1:8080 for a local `meridian serve` (all services behind one
#           path router, like the ALB). Default: $SLO_GATE_BASE_URL.
# SERVICE   limit the gate to these services (default: every service in slo.yaml).
# --label   name of the gated environment for the result line, e.g. "staging"
#           (default: $SLO_GATE_LABEL). The line always names BASE_URL too, so a local run
#           never reads as a staging result.
# --print   print the exact commands, one per line, shell-quoted, and run nothing (the token
#           file is $SLO_PROBE_TOKEN_FILE, or the placeholder TOKEN_FILE when it would be fetched).
#
# Runs, per service:
#   slo-gate --url BASE_URL/PATH --requests N --p99-ms X --max-error-rate Y --bearer-token-file F
# The binary is $SLO_GATE_BIN (default: slo-gate on PATH; on a Buildkite agent without it,
# copied out of this commit's operator image). Every service is probed even
# after a breach, so the log shows all of them; the exit status is non-zero when any
# probe breached or could not run.
#
# Every probe carries the slo-probe identity's bearer token, from one of:
#   SLO_PROBE_TOKEN_FILE     a file holding the token (local runs: `meridian token --sub slo-probe
#                            --scope streams:sessions`); used as is, never fetched;
#   otherwise the OAuth2 client-credentials grant against the issuer's token endpoint (Cognito):
#   SLO_PROBE_TOKEN_URL      https://<domain>.auth.<region>.amazoncognito.com/oauth2/token
#   SLO_PROBE_CLIENT_ID      the slo-probe app client's id
#   SLO_PROBE_CLIENT_SECRET  its secret
#   SLO_PROBE_SCOPE          requested scope (default meridian/streams:sessions)
# Each of the three comes from the environment, else from `buildkite-agent secret get NAME`
# (Buildkite secrets, same names); Terraform keeps them in Secrets Manager as
# <name_prefix>/identity/slo-probe {client_id, client_secret, token_url, scope}. The token is
# written to a mode-0600 file in a private temporary directory removed on exit, and is never
# printed: neither the client secret nor the token appears on a command line.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

print_only=false
label="${SLO_GATE_LABEL:-}"
while (($#)); do
  case "$1" in
    --print) print_only=true; shift ;;
    --file) SLO_FILE="$2"; shift 2 ;;
    --label) (($# >= 2)) || die "--label needs a NAME"; label="$2"; shift 2 ;;
    -h | --help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "${BASH_SOURCE[0]}"; exit 0 ;;
    --) shift; break ;;
    -*) die "unknown option $1" ;;
    *) break ;;
  esac
done

base="${1:-${SLO_GATE_BASE_URL:-}}"
[[ -n "$base" ]] || die "usage: slo-gate.sh [--print] [--file SLO_YAML] [--label NAME] BASE_URL [SERVICE...]"
[[ "$base" =~ ^https?://[^[:space:]]+$ ]] || die "BASE_URL must be an http(s) URL: $base"
base="${base%/}"
shift || true
# What the result line says was gated: "staging (https://...)" with a label, else the URL.
target="$base"
[[ -z "$label" ]] || target="$label ($base)"
wanted=("$@")

table="$(slo_table)"
bin="${SLO_GATE_BIN:-slo-gate}"
# The token file every probe reads: the caller's, or one fetched into a private directory
# just before probing (after every check that could still fail without it).
token_file="${SLO_PROBE_TOKEN_FILE:-}"
fetch_token=false
if [[ -z "$token_file" ]]; then
  if $print_only; then
    token_file=TOKEN_FILE
  else
    private_dir="$(umask 077 && mktemp -d)"
    trap 'rm -rf "$private_dir"' EXIT
    token_file="$private_dir/token"
    fetch_token=true
  fi
fi
if ! $print_only; then
  # On a Buildkite agent without the CLI installed, take it from this commit's operator image
  # (docker/operator.Dockerfile ships it), so CI gates with exactly the code it deploys.
  if ! command -v "$bin" >/dev/null 2>&1 && [[ "${BUILDKITE:-}" == "true" && -z "${SLO_GATE_BIN:-}" ]] &&
    command -v docker >/dev/null 2>&1; then
    image="$(image_ref operator)"
    dir="$(mktemp -d)"
    log "extracting slo-gate from $image"
    docker pull --quiet "$image" >/dev/null
    cid="$(docker create "$image")"
    docker cp "$cid:/usr/local/bin/slo-gate" "$dir/slo-gate"
    docker rm "$cid" >/dev/null
    bin="$dir/slo-gate"
  fi
  command -v "$bin" >/dev/null 2>&1 || die "$bin not found (build it: cargo build --release --locked --bin slo-gate, or set SLO_GATE_BIN)"
fi

commands=()
found=()
while IFS=$'\t' read -r service p99 err path requests provisional; do
  if ((${#wanted[@]})); then
    match=false
    for w in "${wanted[@]}"; do [[ "$w" == "$service" ]] && match=true; done
    $match || continue
  fi
  found+=("$service")
  if [[ "$provisional" == "true" ]]; then
    log "note: $service probes provisional path $path (its routes are not final)"
  fi
  commands+=("$(printf '%q ' "$bin" --url "${base}${path}" --requests "$requests" \
    --p99-ms "$p99" --max-error-rate "$err" --bearer-token-file "$token_file")")
done <<<"$table"

for w in "${wanted[@]}"; do
  [[ " ${found[*]} " == *" $w "* ]] || die "service $w is not in $SLO_FILE"
done

if $print_only; then
  printf '%s\n' "${commands[@]% }"
  exit 0
fi

if $fetch_token; then
  fetch_probe_token "$token_file"
else
  [[ -r "$token_file" && -s "$token_file" ]] || die "SLO_PROBE_TOKEN_FILE $token_file is not a readable, non-empty file"
  if [[ "$(stat -c %a "$token_file")" != [0-7]00 ]]; then
    log "warning: $token_file is readable by group or others; chmod 600 it"
  fi
fi


failed=()
for i in "${!commands[@]}"; do
  log "gate ${found[$i]}: ${commands[$i]}"
  # The command line was built with printf %q above; eval undoes exactly that quoting.
  if ! eval "${commands[$i]}"; then
    failed+=("${found[$i]}")
  fi
done

if ((${#failed[@]})); then
  printf ':rotating_light: SLO gate breached on %s for: **%s** (thresholds: buildkite/slo.yaml)\n' "$target" "${failed[*]}" |
    annotate error slo-gate
  exit 1
fi
printf ':white_check_mark: SLO gate passed on %s for: %s\n' "$target" "${found[*]}" | annotate success slo-gate
