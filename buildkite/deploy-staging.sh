#!/usr/bin/env bash
# shellcheck disable=SC2016  # backticks in printf formats are Markdown for annotations
# Deploy this commit to staging: one Release per service, then wait for every Release
# to reach Succeeded (the operator migrates, starts the preview colour, analyses it
# against the SLO from slo.yaml and promotes). Fails on the first Failed Release.
#   buildkite/deploy-staging.sh [SERVICE...]     default: every deployable service
# Env: KUBE_CONTEXT (default meridian-staging), RELEASE_TIMEOUT_SECONDS (default 1800),
#      DRY_RUN=1 prints the manifests instead of applying them.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# slo.yaml (the services and each Release's analysis) is read by slo-gate.
use_slo_gate
if (($#)); then
  services=("$@")
else
  listed="$(deployable_services)" || exit 1
  mapfile -t services <<<"$listed"
fi
((${#services[@]})) || die "no deployable services in slo.yaml"

manifests=""
for s in "${services[@]}"; do
  in_workspace "$s" || die "$s is not in the workspace"
  release="$(render_release "$s")" || exit 1
  manifests+="---"$'\n'"$release"$'\n'
done

if [[ "${DRY_RUN:-0}" == "1" ]]; then
  printf '%s' "$manifests"
  exit 0
fi

export KUBECONFIG="${KUBECONFIG:-$HOME/.kube/config}"
kubectl config use-context "${KUBE_CONTEXT:-meridian-staging}" >/dev/null
log "applying ${#services[@]} Release(s) for $(git_sha) to ${KUBE_CONTEXT:-meridian-staging}"
printf '%s' "$manifests" | kubectl apply --server-side --field-manager=buildkite -f -

failed=()
for s in "${services[@]}"; do
  if ! wait_for_phase release "$s" "$MERIDIAN_NAMESPACE" "${RELEASE_TIMEOUT_SECONDS:-1800}" \
    Succeeded Failed RollingBack RolledBack Frozen; then
    failed+=("$s")
  fi
done

if ((${#failed[@]})); then
  printf ':x: staging Release failed for: **%s**. See runbooks/pages/release-failed.md.\n' "${failed[*]}" |
    annotate error staging
  exit 1
fi
printf ':white_check_mark: staging runs `%s` for: %s\n' "$(git_sha)" "${services[*]}" | annotate success staging
