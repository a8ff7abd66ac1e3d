#!/usr/bin/env bash
# shellcheck disable=SC2016  # backticks in printf formats are Markdown for annotations
# Deploy this commit to production, wave by wave (waves.conf), whichever platform each country
# runs on (country_platform: Terraform's size profile). In each wave, at once:
#   - its EKS countries: one Rollout CR per service in the management cluster, carrying that wave
#     (the operator releases, analyses and bakes it, and with haltPolicy RollbackWave puts the
#     wave's EKS countries back on their previous image when one fails);
#   - its ECS countries: `meridian-deploy ecs` per service and country (the same Release spec:
#     blue-green on the ALB, the same probe; it rolls its country back itself), then the wave's
#     bake, then a re-run that must find the new image still active.
# The next wave starts only when every country of this one succeeded and baked; a failure stops
# the run (no later wave starts; runbooks/pages/rollout-halted.md).
#   buildkite/deploy-prod.sh [COUNTRY...]    default: every country of waves.conf, in its waves;
#                                            COUNTRY...: only those (e.g. a new country's first deploy)
# Env: KUBE_CONTEXT (default meridian-management), ROLLOUT_TIMEOUT_SECONDS (default: per wave its
#      bake time + 30 minutes for release and analysis), DRY_RUN=1 prints, wave by wave, the
#      Rollouts and the ECS Releases (each headed by the command that takes it) instead of
#      applying them; MERIDIAN_DEPLOY_BIN (default meridian-deploy on PATH: cargo build --locked
#      --release -p meridian-deploy-ecs), AWS_PROFILE_PREFIX (default meridian-prod-: the AWS
#      profile of country cc is <prefix>cc, its account and region).
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

table="$(waves "$@")" || exit 1
plan="$(awk '{ $1 = ""; $2 = ""; sub(/^ +/, ""); printf "%s%s", sep, $0; sep = "; " }' <<<"$table")"

# slo.yaml (the services) is read by slo-gate.
use_slo_gate
listed="$(deployable_services)" || exit 1
mapfile -t services <<<"$listed"
((${#services[@]})) || die "no deployable services"

# One wave's countries split by platform: sets the globals eks_ccs and ecs_ccs.
split_wave() {
  local cc p
  eks_ccs=()
  ecs_ccs=()
  for cc in "$@"; do
    p="$(country_platform "$cc")" || exit 1
    if [[ "$p" == ecs ]]; then ecs_ccs+=("$cc"); else eks_ccs+=("$cc"); fi
  done
}

if [[ "${DRY_RUN:-0}" == "1" ]]; then
  while read -r wave _ countries; do
    read -r -a ccs <<<"$countries"
    split_wave "${ccs[@]}"
    for s in "${services[@]}"; do
      if ((${#eks_ccs[@]})); then
        printf -- '---\n%s\n' "$(render_rollout "$s" "${eks_ccs[@]}")"
      fi
      for cc in "${ecs_ccs[@]}"; do
        printf -- '---\n%s\n' "$(render_ecs_release "$s" "$cc" "$wave")"
      done
    done
  done <<<"$table"
  exit 0
fi

deploy_bin="${MERIDIAN_DEPLOY_BIN:-meridian-deploy}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
token=""

# ecs_release SERVICE CC WAVE: one `meridian-deploy ecs` run; its JSON summary goes to
# $work/SERVICE-CC.json, its exit status is the command's (0 promoted or already active).
ecs_release() {
  local s="$1" cc="$2" wave="$3" dir="$work/$1-$2"
  mkdir -p "$dir"
  render_ecs_release "$s" "$cc" "$wave" >"$dir/release.yaml" || return 2
  AWS_PROFILE="${AWS_PROFILE_PREFIX:-meridian-prod-}$cc" aws ssm get-parameter \
    --name "$(ecs_target_parameter "$s" "$cc")" --query Parameter.Value --output text >"$dir/target.json" ||
    { log "$s/$cc: no ECS target in SSM $(ecs_target_parameter "$s" "$cc")"; return 2; }
  AWS_PROFILE="${AWS_PROFILE_PREFIX:-meridian-prod-}$cc" "$deploy_bin" ecs \
    --release "$dir/release.yaml" --target "$dir/target.json" --probe-token-file "$token" \
    >"$dir/summary.json" 2> >(sed "s/^/[$s\/$cc] /" >&2)
}

failed=()
while read -r wave bake countries; do
  read -r -a ccs <<<"$countries"
  split_wave "${ccs[@]}"
  timeout="${ROLLOUT_TIMEOUT_SECONDS:-$(($(duration_seconds "$bake") + 1800))}"
  log "wave $wave: ${ccs[*]} (EKS: ${eks_ccs[*]:-none}; ECS: ${ecs_ccs[*]:-none}; bake $bake)"

  rollouts=()
  if ((${#eks_ccs[@]})); then
    kubectl config use-context "${KUBE_CONTEXT:-meridian-management}" >/dev/null
    manifests=""
    for s in "${services[@]}"; do
      manifests+="---"$'\n'"$(render_rollout "$s" "${eks_ccs[@]}")"$'\n'
      rollouts+=("$s:$(rollout_name "$s" "${eks_ccs[@]}")")
    done
    printf '%s' "$manifests" | kubectl apply --server-side --field-manager=buildkite -f -
  fi

  declare -A pids=()
  if ((${#ecs_ccs[@]})); then
    command -v "$deploy_bin" >/dev/null 2>&1 ||
      die "$deploy_bin not found: cargo build --locked --release -p meridian-deploy-ecs and set MERIDIAN_DEPLOY_BIN"
    if [[ -z "$token" ]]; then
      token="$work/probe.token"
      fetch_probe_token "$token"
    fi
    for s in "${services[@]}"; do
      for cc in "${ecs_ccs[@]}"; do
        ecs_release "$s" "$cc" "$wave" &
        pids["$s/$cc"]=$!
      done
    done
  fi

  for key in "${!pids[@]}"; do
    wait "${pids[$key]}" || failed+=("$key (ECS)")
  done
  if ((${#ecs_ccs[@]})) && ((${#failed[@]} == 0)); then
    # The bake, as the Rollout does it on EKS: the wave stays released this long, then each ECS
    # country must still run the new image on its production listener.
    log "wave $wave: ECS countries released; baking $bake"
    sleep "$(duration_seconds "$bake")"
    for s in "${services[@]}"; do
      for cc in "${ecs_ccs[@]}"; do
        ecs_release "$s" "$cc" "$wave" && grep -q '"already-active"' "$work/$s-$cc/summary.json" ||
          failed+=("$s/$cc (ECS, after the bake)")
      done
    done
  fi
  for r in "${rollouts[@]}"; do
    if ! wait_for_phase rollout "${r#*:}" "" "$timeout" Succeeded Halted RollingBack RolledBack Superseded; then
      failed+=("${r%%:*} (EKS: ${eks_ccs[*]})")
    fi
  done
  unset pids

  if ((${#failed[@]})); then
    printf ':octagonal_sign: wave %s did not finish in production (`%s`; waves: %s): %s. Later waves did not start; EKS countries of the wave were rolled back by their Rollout, each ECS country by meridian-deploy ecs. `kubectl get rollout` / the step log say which; see runbooks/pages/rollout-halted.md.\n' \
      "$wave" "$(git_sha)" "$plan" "${failed[*]}" | annotate error production
    exit 1
  fi
done <<<"$table"
printf ':white_check_mark: production runs `%s` (waves: %s, each baked)\n' "$(git_sha)" "$plan" | annotate success production
