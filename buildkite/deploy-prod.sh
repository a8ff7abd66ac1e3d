#!/usr/bin/env bash
# shellcheck disable=SC2016  # backticks in printf formats are Markdown for annotations
# Deploy this commit to one country's production cluster through a Rollout CR in the
# management cluster, then wait until the Rollout Succeeded (released, analysed and
# baked) or fail when it Halted.
#   buildkite/deploy-prod.sh COUNTRY [BAKE]       BAKE default: the country's wave in waves.conf
# Env: KUBE_CONTEXT (default meridian-management), ROLLOUT_TIMEOUT_SECONDS (default 5400),
#      DRY_RUN=1 prints the manifest instead of applying it.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

country="${1:?usage: deploy-prod.sh COUNTRY [BAKE]}"
[[ "$country" =~ ^[a-z]{2}$ ]] || die "country must be a two-letter code: $country"
bake="${2:-$(awk -v c="$country" '!/^[[:space:]]*(#|$)/ { for (i = 3; i <= NF; i++) if ($i == c) print $2 }' "$WAVES_FILE")}"
[[ -n "$bake" ]] || die "country $country is in no wave of $WAVES_FILE"

# slo.yaml (the services) is read by slo-gate.
use_slo_gate
listed="$(deployable_services)" || exit 1
mapfile -t services <<<"$listed"
((${#services[@]})) || die "no deployable services"
manifests=""
for s in "${services[@]}"; do
  manifests+="---"$'\n'"$(render_rollout "$s" "$country" "$bake")"$'\n'
done

if [[ "${DRY_RUN:-0}" == "1" ]]; then
  printf '%s' "$manifests"
  exit 0
fi

kubectl config use-context "${KUBE_CONTEXT:-meridian-management}" >/dev/null
log "applying ${#services[@]} Rollout(s) (${services[*]} -> $country, bake $bake)"
printf '%s' "$manifests" | kubectl apply --server-side --field-manager=buildkite -f -

halted=()
for s in "${services[@]}"; do
  name="$(rollout_name "$s" "$country")"
  if ! wait_for_phase rollout "$name" "" "${ROLLOUT_TIMEOUT_SECONDS:-5400}" Succeeded Halted RollingBack RolledBack; then
    halted+=("$s")
  fi
done
if ((${#halted[@]})); then
  printf ':octagonal_sign: %s halted in **%s** (`%s`). Later waves will not start. See runbooks/pages/rollout-halted.md.\n' \
    "${halted[*]}" "$country" "$(git_sha)" | annotate error "prod-$country"
  exit 1
fi
printf ':white_check_mark: %s runs `%s` (baked %s)\n' "$country" "$(git_sha)" "$bake" | annotate success "prod-$country"
