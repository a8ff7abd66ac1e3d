#!/usr/bin/env bash
# Latency SLO gate (the pipeline runs it against staging): one `slo-gate` probe per service in
# slo.yaml, each on the service's hot route with the thresholds and the cycle slo.yaml gives it.
# slo-gate reads slo.yaml itself; this script only passes the file, a service and credentials.
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
#           file is $SLO_PROBE_TOKEN_FILE, or the placeholder TOKEN_FILE when it would be fetched;
#           the webhook secret file likewise WEBHOOK_SECRET_FILE).
#
# Runs, per service:
#   slo-gate --slo-file SLO_YAML --service S --base-url BASE_URL --bearer-token-file F
#            [--webhook-secret-file W]
# The binary is $SLO_GATE_BIN (default: slo-gate on PATH; on a Buildkite agent without it,
# copied out of this commit's operator image: lib.sh use_slo_gate). Every service is probed even
# after a breach, so the log shows all of them; the exit status is non-zero when any probe
# breached or could not run. An invalid slo.yaml fails before anything is probed, naming the
# service and the field.
#
# Every unsigned request carries the slo-probe identity's bearer token, from one of:
#   SLO_PROBE_TOKEN_FILE     a file holding the token (local runs: `meridian token --sub slo-probe
#                            --scope streams:sessions`); used as is, never fetched;
#   otherwise the OAuth2 client-credentials grant against the issuer's token endpoint (Cognito):
#   SLO_PROBE_TOKEN_URL      https://<domain>.auth.<region>.amazoncognito.com/oauth2/token
#   SLO_PROBE_CLIENT_ID      the slo-probe app client's id
#   SLO_PROBE_CLIENT_SECRET  its secret
#   SLO_PROBE_SCOPE          requested scope (default meridian/streams:sessions)
# Each of the three comes from the environment, else from `buildkite-agent secret get NAME`
# (Buildkite secrets, same names); Terraform keeps them in Secrets Manager as
# <name_prefix>/identity/slo-probe {client_id, client_secret, token_url, scope}.
#
# The calls decision webhook takes no token: the probe signs its body as the provider
# `slo-probe` (buildkite/slo.yaml), with the secret of that provider's entry in staging's
# CALLS_WEBHOOK_SECRETS, from one of:
#   SLO_PROBE_WEBHOOK_SECRET_FILE  a file holding the secret (local runs, tests/policy/gate.sh)
#   SLO_PROBE_WEBHOOK_SECRET       the secret itself: environment, else `buildkite-agent secret get`
# Without either, a service whose cycle signs fails the gate, naming the setting.
#
# Fetched values are written to mode-0600 files in a private temporary directory removed on exit,
# and are never printed: neither the client secret, the token nor the webhook secret appears on a
# command line.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

print_only=false
label="${SLO_GATE_LABEL:-}"
while (($#)); do
  case "$1" in
    --print) print_only=true; shift ;;
    --file) (($# >= 2)) || die "--file needs a path"; SLO_FILE="$2"; shift 2 ;;
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

use_slo_gate
bin="$SLO_GATE_BIN"
# slo-gate checks the whole file here, before any token is fetched or anything probed.
listed="$(slo_gate --slo-file "$SLO_FILE" --list-services)" || exit 1
mapfile -t listed <<<"$listed"
found=()
for service in "${listed[@]}"; do
  if ((${#wanted[@]})); then
    match=false
    for w in "${wanted[@]}"; do [[ "$w" == "$service" ]] && match=true; done
    $match || continue
  fi
  found+=("$service")
done
for w in "${wanted[@]}"; do
  [[ " ${found[*]} " == *" $w "* ]] || die "service $w is not in $SLO_FILE"
done

# The token and webhook secret files every probe reads: the caller's, or ones fetched into a
# private directory just before probing (after every check that could still fail without them).
private_dir=""
private() {
  if [[ -z "$private_dir" ]]; then
    private_dir="$(umask 077 && mktemp -d)"
    trap 'rm -rf "$private_dir"' EXIT
  fi
}
token_file="${SLO_PROBE_TOKEN_FILE:-}"
fetch_token=false
if [[ -z "$token_file" ]]; then
  if $print_only; then
    token_file=TOKEN_FILE
  else
    private
    token_file="$private_dir/token"
    fetch_token=true
  fi
fi
secret_file="${SLO_PROBE_WEBHOOK_SECRET_FILE:-}"
if [[ -z "$secret_file" ]]; then
  if $print_only; then
    secret_file=WEBHOOK_SECRET_FILE
  else
    secret="$(optional_setting SLO_PROBE_WEBHOOK_SECRET)"
    if [[ -n "$secret" ]]; then
      private
      secret_file="$private_dir/webhook-secret"
      # printf is a builtin: the secret is on no command line.
      (umask 077 && printf '%s\n' "$secret" >"$secret_file")
    else
      log "note: no SLO_PROBE_WEBHOOK_SECRET(_FILE): a service whose cycle signs its requests (calls) will fail"
    fi
    unset secret
  fi
elif ! $print_only; then
  [[ -r "$secret_file" && -s "$secret_file" ]] || die "SLO_PROBE_WEBHOOK_SECRET_FILE $secret_file is not a readable, non-empty file"
  if [[ "$(stat -c %a "$secret_file")" != [0-7]00 ]]; then
    log "warning: $secret_file is readable by group or others; chmod 600 it"
  fi
fi

commands=()
for service in "${found[@]}"; do
  args=("$bin" --slo-file "$SLO_FILE" --service "$service" --base-url "$base" --bearer-token-file "$token_file")
  [[ -z "$secret_file" ]] || args+=(--webhook-secret-file "$secret_file")
  commands+=("$(printf '%q ' "${args[@]}")")
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
  printf ':rotating_light: SLO gate breached on %s for: **%s** (thresholds and routes: buildkite/slo.yaml)\n' "$target" "${failed[*]}" |
    annotate error slo-gate
  exit 1
fi
printf ':white_check_mark: SLO gate passed on %s for: %s\n' "$target" "${found[*]}" | annotate success slo-gate
