#!/usr/bin/env bash
# shellcheck disable=SC2016  # backticks in printf formats are Markdown for annotations
# Deploy this commit to production: one Rollout CR per service in the management cluster, each
# carrying every wave of waves.conf, then wait until every Rollout Succeeded (released, analysed
# and baked, wave by wave) or fail when one Halted, rolled back or was Superseded (a newer build
# re-imaged one of its countries). The Rollout owns the wave order and the bake
# times (operator/src/rollout/plan.rs); this script only renders and waits.
#   buildkite/deploy-prod.sh [COUNTRY...]    default: every country of waves.conf, in its waves;
#                                            COUNTRY...: only those (e.g. a new country's first deploy)
# Env: KUBE_CONTEXT (default meridian-management), ROLLOUT_TIMEOUT_SECONDS (default: per wave its
#      bake time + 30 minutes for release and analysis), DRY_RUN=1 prints the manifests instead of
#      applying them.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

table="$(waves "$@")" || exit 1
timeout="${ROLLOUT_TIMEOUT_SECONDS:-}"
if [[ -z "$timeout" ]]; then
  timeout=0
  while read -r _ bake _; do
    timeout=$((timeout + $(duration_seconds "$bake") + 1800))
  done <<<"$table"
fi
plan="$(awk '{ $1 = ""; $2 = ""; sub(/^ +/, ""); printf "%s%s", sep, $0; sep = "; " }' <<<"$table")"

# slo.yaml (the services) is read by slo-gate.
use_slo_gate
listed="$(deployable_services)" || exit 1
mapfile -t services <<<"$listed"
((${#services[@]})) || die "no deployable services"
manifests=""
for s in "${services[@]}"; do
  rollout="$(render_rollout "$s" "$@")" || exit 1
  manifests+="---"$'\n'"$rollout"$'\n'
done

if [[ "${DRY_RUN:-0}" == "1" ]]; then
  printf '%s' "$manifests"
  exit 0
fi

kubectl config use-context "${KUBE_CONTEXT:-meridian-management}" >/dev/null
log "applying ${#services[@]} Rollout(s) (${services[*]}; waves: $plan)"
printf '%s' "$manifests" | kubectl apply --server-side --field-manager=buildkite -f -

halted=()
for s in "${services[@]}"; do
  name="$(rollout_name "$s" "$@")"
  if ! wait_for_phase rollout "$name" "" "$timeout" Succeeded Halted RollingBack RolledBack Superseded; then
    halted+=("$s")
  fi
done
if ((${#halted[@]})); then
  printf ':octagonal_sign: %s did not finish in production (`%s`; waves: %s): halted, rolled back or superseded by a newer build; later waves did not start. `kubectl get rollout` says which; see runbooks/pages/rollout-halted.md.\n' \
    "${halted[*]}" "$(git_sha)" "$plan" | annotate error production
  exit 1
fi
printf ':white_check_mark: production runs `%s` (waves: %s, each baked)\n' "$(git_sha)" "$plan" | annotate success production
