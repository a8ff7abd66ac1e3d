#!/usr/bin/env bash
# Print the production waves as Buildkite steps, for `buildkite-agent pipeline upload`:
#   buildkite/generate-waves.sh [WAVES_FILE] | buildkite-agent pipeline upload
# One step per country (buildkite/deploy-prod.sh CC, a Rollout CR), countries of one
# wave in parallel, each wave depending on every step of the previous one, so a failed
# or halted country stops all later waves. Each country has its own concurrency group:
# two builds never deploy the same country at once, and they queue in build order.
# Finally a step records the deployed commit. Output is validated in
# tests/policy/delivery.sh with check-jsonschema's Buildkite schema.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

file="${1:-$WAVES_FILE}"
[[ -r "$file" ]] || die "waves file not readable: $file"

slack_channel="${DEPLOY_SLACK_CHANNEL:-#meridian-deploys}"
declare -A seen=()
previous=()
wave_count=0
last_wave=0

printf 'steps:\n'
while read -r wave bake countries; do
  [[ -z "$wave" || "$wave" == \#* ]] && continue
  [[ "$wave" =~ ^[0-9]+$ ]] || die "$file: wave number expected, got '$wave'"
  ((wave > last_wave)) || die "$file: waves must be listed in increasing order ($wave after $last_wave)"
  [[ "$bake" =~ ^[0-9]+[smh]$ ]] || die "$file: wave $wave: bake time like 30m expected, got '$bake'"
  read -r -a ccs <<<"$countries"
  ((${#ccs[@]})) || die "$file: wave $wave has no countries"
  last_wave=$wave
  wave_count=$((wave_count + 1))
  current=()
  for cc in "${ccs[@]}"; do
    [[ "$cc" =~ ^[a-z]{2}$ ]] || die "$file: wave $wave: bad country code '$cc'"
    [[ -z "${seen[$cc]:-}" ]] || die "$file: country $cc appears in two waves"
    seen[$cc]=1
    current+=("prod-$cc")
    cat <<YAML
  - label: ":earth_africa: production ${cc} (wave ${wave}, bake ${bake})"
    key: "prod-${cc}"
    command: "buildkite/deploy-prod.sh ${cc} ${bake}"
YAML
    if ((${#previous[@]})); then
      printf '    depends_on:\n'
      printf '      - "%s"\n' "${previous[@]}"
    else
      printf '    depends_on: "approve-production"\n'
    fi
    cat <<YAML
    branches: "main"
    concurrency_group: "meridian/deploy/prod-${cc}"
    concurrency: 1
    concurrency_method: "ordered"
    timeout_in_minutes: 120
    agents:
      queue: "deploy"
    env:
      KUBE_CONTEXT: "meridian-management"
    retry:
      automatic:
        - exit_status: -1
          limit: 2
        - signal_reason: "agent_stop"
          limit: 2
      manual:
        allowed: true
        permit_on_passed: false
        reason: "A passed production deploy is never re-run; start a new build."
    notify:
      - slack:
          channels:
            - "${slack_channel}"
          message: "Production deploy of ${cc} failed: Rollout halted, later waves stopped. Runbook: runbooks/pages/rollout-halted.md"
        if: step.outcome == "hard_failed"
YAML
  done
  previous=("${current[@]}")
done <"$file"

((wave_count)) || die "$file: no waves"

cat <<YAML
  - label: ":bookmark: record production deploy"
    key: "record-production"
    command: "buildkite/mark-deployed.sh production"
    branches: "main"
    depends_on:
YAML
printf '      - "%s"\n' "${previous[@]}"
cat <<YAML
    agents:
      queue: "deploy"
    retry:
      automatic:
        - exit_status: "*"
          limit: 2
YAML
