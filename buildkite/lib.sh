#!/usr/bin/env bash
# Shared helpers for the Buildkite step scripts. Source it; do not run it.
#   . "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
# shellcheck shell=bash

MERIDIAN_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SLO_FILE="${SLO_FILE:-$MERIDIAN_ROOT/buildkite/slo.yaml}"
WAVES_FILE="${WAVES_FILE:-$MERIDIAN_ROOT/buildkite/waves.conf}"
# Registry and repository prefix of every image: <registry>/<prefix><name>:<git sha>, the prefix
# from buildkite/images.conf (shared with terraform/modules/plan: the ECS images).
MERIDIAN_REGISTRY="${MERIDIAN_REGISTRY:-registry.meridian.internal/meridian}"
MERIDIAN_IMAGE_PREFIX="$(sed -n 's/^repository_prefix=//p' "$MERIDIAN_ROOT/buildkite/images.conf")"
# Namespace the Releases live in, in every workload cluster.
MERIDIAN_NAMESPACE="${MERIDIAN_NAMESPACE:-meridian}"

log() { printf '%s %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# The commit being built: Buildkite's, else the work tree's HEAD.
git_sha() {
  if [[ -n "${BUILDKITE_COMMIT:-}" && "${BUILDKITE_COMMIT}" != "HEAD" ]]; then
    printf '%s\n' "$BUILDKITE_COMMIT"
  else
    git -C "$MERIDIAN_ROOT" rev-parse HEAD
  fi
}

image_ref() { # image_ref NAME -> registry/<prefix>NAME:SHA (prefix: buildkite/images.conf)
  [[ -n "$MERIDIAN_IMAGE_PREFIX" ]] || die "no repository_prefix= line in buildkite/images.conf"
  printf '%s/%s%s:%s\n' "$MERIDIAN_REGISTRY" "$MERIDIAN_IMAGE_PREFIX" "$1" "$(git_sha)"
}

# True when the binary's crate exists in the workspace. Image matrix entries for services that
# are planned but not written yet are announced, not built.
in_workspace() {
  case "$1" in
    meridian) [[ -f "$MERIDIAN_ROOT/services/platform/Cargo.toml" ]] ;;
    operator | slo-gate) [[ -f "$MERIDIAN_ROOT/operator/Cargo.toml" ]] ;;
    *) [[ -f "$MERIDIAN_ROOT/services/$1/Cargo.toml" ]] ;;
  esac
}

annotate() { # annotate STYLE CONTEXT < markdown ; also echoes to the log
  local style="$1" context="$2" body
  body="$(cat)"
  printf '%s\n' "$body" >&2
  if command -v buildkite-agent >/dev/null 2>&1; then
    printf '%s\n' "$body" | buildkite-agent annotate --style "$style" --context "$context" --append
  fi
}

# slo.yaml has one reader, the slo-gate binary (operator/probe, src/slo.rs): no script here parses
# it. slo_gate runs $SLO_GATE_BIN (default: slo-gate on PATH); use_slo_gate, called by a step
# script before anything else, finds it (on a Buildkite agent without it: copied out of this
# commit's operator image, docker/operator.Dockerfile ships it) and exports SLO_GATE_BIN, so the
# step reads slo.yaml with exactly the code it deploys.
slo_gate() {
  local bin="${SLO_GATE_BIN:-slo-gate}"
  command -v "$bin" >/dev/null 2>&1 ||
    die "$bin not found: build it (cargo build --locked -p meridian-probe --bin slo-gate) and set SLO_GATE_BIN to it, or put slo-gate on PATH"
  "$bin" "$@"
}

use_slo_gate() {
  local bin="${SLO_GATE_BIN:-slo-gate}" image dir cid
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
  command -v "$bin" >/dev/null 2>&1 ||
    die "$bin not found: build it (cargo build --locked -p meridian-probe --bin slo-gate) and set SLO_GATE_BIN to it, or put slo-gate on PATH"
  export SLO_GATE_BIN="$bin"
}

# optional_setting NAME: NAME from the environment, else from Buildkite secrets
# (`buildkite-agent secret get NAME`), else empty.
optional_setting() {
  local name="$1" value="${!1:-}"
  if [[ -z "$value" ]] && command -v buildkite-agent >/dev/null 2>&1; then
    value="$(buildkite-agent secret get "$name" 2>/dev/null)" || value=""
  fi
  printf '%s' "$value"
}

# probe_setting NAME: like optional_setting, but fail naming both places when it is not set.
probe_setting() {
  local value
  value="$(optional_setting "$1")"
  [[ -n "$value" ]] || die "$1 is not set (environment or Buildkite secret $1); see buildkite/README.md, 'SLO probe identity'"
  printf '%s' "$value"
}

# fetch_probe_token OUT_FILE: the slo-probe identity's access token, by the OAuth2
# client-credentials grant (RFC 6749 §4.4) against SLO_PROBE_TOKEN_URL with
# SLO_PROBE_CLIENT_ID / SLO_PROBE_CLIENT_SECRET (HTTP Basic, as Cognito's token endpoint takes
# them) for SLO_PROBE_SCOPE, written to OUT_FILE with mode 0600. The secret reaches curl on
# stdin (a config line), never in its arguments; the token is never printed. Errors name the
# endpoint and the issuer's `error` code only.
fetch_probe_token() {
  local out="$1" url id secret scope response status json err
  url="$(probe_setting SLO_PROBE_TOKEN_URL)" || exit 1
  id="$(probe_setting SLO_PROBE_CLIENT_ID)" || exit 1
  secret="$(probe_setting SLO_PROBE_CLIENT_SECRET)" || exit 1
  scope="${SLO_PROBE_SCOPE:-meridian/streams:sessions}"
  # https only, except plain http to this machine (a local issuer).
  [[ "$url" =~ ^https://[^[:space:]]+$ || "$url" =~ ^http://(127\.0\.0\.1|localhost|\[::1\])(:[0-9]+)?/[^[:space:]]*$ ]] ||
    die "SLO_PROBE_TOKEN_URL must be an https URL (http only to localhost): $url"
  # Cognito ids and secrets are base64-ish; anything else could break out of the curl config line.
  # (Lengths are checked apart: glibc compiles a bounded repetition like {1,512} very slowly.)
  [[ ${#id} -le 256 && "$id" =~ ^[A-Za-z0-9._~+/=-]+$ ]] || die "SLO_PROBE_CLIENT_ID is not a client id"
  [[ ${#secret} -le 512 && "$secret" =~ ^[A-Za-z0-9._~+/=-]+$ ]] || die "SLO_PROBE_CLIENT_SECRET is not a client secret"
  [[ ${#scope} -le 512 && "$scope" =~ ^[A-Za-z0-9._~:/\ -]+$ ]] || die "SLO_PROBE_SCOPE is not a scope list"
  response="$(dirname "$out")/token-response"
  status="$(printf 'user = "%s:%s"\n' "$id" "$secret" |
    (umask 077 && curl --config - --silent --show-error --max-time 15 --retry 2 \
      --max-filesize 65536 --output "$response" --write-out '%{http_code}' \
      --data-urlencode grant_type=client_credentials --data-urlencode "scope=$scope" "$url"))" ||
    { rm -f "$response"; die "token request to $url failed (see curl's message above)"; }
  json="$(head -c 65536 "$response")"
  rm -f "$response"
  if [[ "$status" != 200 ]]; then
    err=""
    if [[ "$json" =~ \"error\"[[:space:]]*:[[:space:]]*\"([a-z_]+)\" ]]; then err=" (${BASH_REMATCH[1]:0:64})"; fi
    die "token request to $url answered HTTP $status$err"
  fi
  [[ "$json" =~ \"access_token\"[[:space:]]*:[[:space:]]*\"([A-Za-z0-9._~+/=-]+)\" && ${#BASH_REMATCH[1]} -le 16384 ]] ||
    die "token response from $url has no access_token (of at most 16 KiB)"
  (umask 077 && printf '%s\n' "${BASH_REMATCH[1]}" >"$out")
  log "probe token obtained from $url (scope $scope)"
}

# slo_services: names of the services in slo.yaml, in file order (slo-gate checks the whole file).
slo_services() {
  slo_gate --slo-file "$SLO_FILE" --list-services
}

# wait_for_phase KIND NAME NAMESPACE TIMEOUT_SECONDS OK_PHASE FAIL_PHASE...
# Polls the custom resource until the operator has observed the applied generation
# (status.observedGeneration == metadata.generation, so a stale "Succeeded" from the
# previous release does not count) and status.phase is OK_PHASE. Fails fast on any
# FAIL_PHASE and on timeout, printing the resource for the log.
wait_for_phase() {
  local kind="$1" name="$2" namespace="$3" timeout="$4" ok="$5"
  shift 5
  local -a ns_args=()
  [[ -n "$namespace" ]] && ns_args=(--namespace "$namespace")
  local deadline=$((SECONDS + timeout)) out gen observed phase last=""
  while ((SECONDS < deadline)); do
    out="$(kubectl get "$kind" "$name" "${ns_args[@]}" \
      -o jsonpath='{.metadata.generation} {.status.observedGeneration} {.status.phase}')" || out=""
    read -r gen observed phase <<<"$out"
    if [[ -n "${gen:-}" && "${observed:-}" == "$gen" ]]; then
      if [[ "$phase" != "$last" ]]; then
        log "$kind/$name: ${phase:-<none>}"
        last="$phase"
      fi
      if [[ "$phase" == "$ok" ]]; then
        return 0
      fi
      local f
      for f in "$@"; do
        if [[ "$phase" == "$f" ]]; then
          kubectl get "$kind" "$name" "${ns_args[@]}" -o yaml >&2 || true
          log "$kind/$name ended in phase $phase"
          return 1
        fi
      done
    fi
    sleep "${WAIT_POLL_SECONDS:-10}"
  done
  kubectl get "$kind" "$name" "${ns_args[@]}" -o yaml >&2 || true
  log "$kind/$name: timed out after ${timeout}s (last phase: ${last:-<none>})"
  return 1
}

# The manifests below follow the operator's CRDs (operator/src/crd.rs, operator/deploy/crds.yaml);
# operator/tests/buildkite_manifests.rs renders them and fails on any field the CRDs would prune.

# render_analysis SERVICE INDENT: the spec.analysis block for SERVICE, its probe fields as slo-gate
# prints them from slo.yaml (path, requests, concurrency, timeoutMs, p99Ms, maxErrorRate). The probe
# carries the slo-probe identity's token from the Secret $MERIDIAN_PROBE_TOKEN_SECRET (default
# slo-probe-token, key `token`, in the Release's namespace; set it empty for no token). The
# operator's Role may read only that Secret name (operator rbac --probe-token-secret).
render_analysis() {
  local service="$1" pad="$2" fields line secret
  secret="${MERIDIAN_PROBE_TOKEN_SECRET-slo-probe-token}"
  [[ -z "$secret" || (${#secret} -le 253 && "$secret" =~ ^[a-z0-9]([a-z0-9.-]*[a-z0-9])?$) ]] ||
    die "MERIDIAN_PROBE_TOKEN_SECRET is not a Secret name: $secret"
  fields="$(slo_gate --slo-file "$SLO_FILE" --print-analysis "$service")" || return 1
  printf '%sanalysis:\n%s  probe:\n' "$pad" "$pad"
  while IFS= read -r line; do
    printf '%s    %s\n' "$pad" "$line"
  done <<<"$fields"
  if [[ -n "$secret" ]]; then
    cat <<EOF
${pad}    bearerTokenSecret:
${pad}      name: ${secret}
${pad}      key: token
EOF
  fi
}

# render_release SERVICE: a Release for the staging cluster (namespaced). Convention: the
# active Service is named after the service, the preview Service is <service>-preview.
render_release() {
  local service="$1" image sha analysis
  image="$(image_ref "$service")"
  sha="$(git_sha)"
  # Before the heredoc: a failure inside it would not stop the function.
  analysis="$(render_analysis "$service" "  ")" || return 1
  cat <<EOF
apiVersion: meridian.dev/v1alpha1
kind: Release
metadata:
  name: ${service}
  namespace: ${MERIDIAN_NAMESPACE}
  labels:
    app.kubernetes.io/name: ${service}
    app.kubernetes.io/part-of: meridian
  annotations:
    meridian.dev/commit: "${sha}"
    meridian.dev/build-url: "${BUILDKITE_BUILD_URL:-local}"
spec:
  service: ${service}
  image: ${image}
  replicas: ${STAGING_REPLICAS:-2}
  activeService: ${service}
  previewService: ${service}-preview
  # DATABASE_SECRET_ARN, AWS_REGION and AUTH_* (and calls' secrets through an ExternalSecret):
  # terraform's kubernetes_env_manifests output creates it.
  envFromSecret: ${service}-env
  migration:
    # The image's one binary (docker/Dockerfile's ENTRYPOINT), in its migrate mode.
    command: ["/usr/local/bin/service", "migrate"]
${analysis}
EOF
}

# duration_seconds 30m|1h|90s|45 -> seconds
duration_seconds() {
  local d="$1"
  case "$d" in
    *[0-9]h) echo $((${d%h} * 3600)) ;;
    *[0-9]m) echo $((${d%m} * 60)) ;;
    *[0-9]s) echo "${d%s}" ;;
    "" | *[!0-9]*) die "not a duration: $d" ;;
    *) echo "$d" ;;
  esac
}

# waves [COUNTRY...]: the production waves of $WAVES_FILE (its one reader), one line each:
# "WAVE BAKE CC...", checked: increasing wave numbers, a bake time like 30m, lower-case two-letter
# country codes, no country in two waves, at least one wave. With COUNTRY..., only the waves and
# countries named, each keeping its wave's bake time (each must be in a wave).
waves() {
  local file="$WAVES_FILE" wave bake countries cc last=0 n=0 w
  local -a ccs keep
  local -A seen=()
  [[ -r "$file" ]] || die "waves file not readable: $file"
  while read -r wave bake countries; do
    [[ -z "$wave" || "$wave" == \#* ]] && continue
    [[ "$wave" =~ ^[0-9]+$ ]] || die "$file: wave number expected, got '$wave'"
    ((wave > last)) || die "$file: waves must be listed in increasing order ($wave after $last)"
    [[ "$bake" =~ ^[0-9]+[smh]$ ]] || die "$file: wave $wave: bake time like 30m expected, got '$bake'"
    read -r -a ccs <<<"$countries"
    ((${#ccs[@]})) || die "$file: wave $wave has no countries"
    last=$wave
    n=$((n + 1))
    keep=()
    for cc in "${ccs[@]}"; do
      [[ "$cc" =~ ^[a-z]{2}$ ]] || die "$file: wave $wave: bad country code '$cc'"
      [[ -z "${seen[$cc]:-}" ]] || die "$file: country $cc appears in two waves"
      seen[$cc]=$wave
      if (($#)); then
        for w in "$@"; do [[ "$w" == "$cc" ]] && keep+=("$cc"); done
      else
        keep+=("$cc")
      fi
    done
    ((${#keep[@]} == 0)) || printf '%s %s %s\n' "$wave" "$bake" "${keep[*]}"
  done <"$file"
  ((n)) || die "$file: no waves"
  for w in "$@"; do
    [[ "$w" =~ ^[a-z]{2}$ ]] || die "country must be a two-letter code: $w"
    [[ -n "${seen[$w]:-}" ]] || die "country $w is in no wave of $file"
  done
}

# render_rollout SERVICE [COUNTRY...]: the cluster-scoped Rollout releasing SERVICE at this commit
# to production: every wave of waves.conf in order (or only the COUNTRY... given, in their waves,
# e.g. a new country's first deploy). The Rollout owns the order: the operator releases, analyses
# and bakes wave by wave (bakeSeconds), starts a wave only after the previous one baked, and with
# haltPolicy RollbackWave puts a failing wave back on its previous image and starts no later wave.
# Countries of one wave go at once (maxParallel = the largest wave). The Release it drives in each
# country's cluster is named after the service, in $MERIDIAN_NAMESPACE.
#
# Only the countries on EKS (country_platform): those on ECS have no cluster for a Release, and
# deploy-prod.sh releases them with `meridian-deploy ecs` in their wave (render_ecs_release).
render_rollout() {
  local service="$1" sha image all table="" wave bake countries cc max=1 p
  local -a ccs eks
  shift
  sha="$(git_sha)"
  image="$(image_ref "$service")"
  all="$(waves "$@")" || return 1
  while read -r wave bake countries; do
    read -r -a ccs <<<"$countries"
    eks=()
    for cc in "${ccs[@]}"; do
      p="$(country_platform "$cc")" || return 1
      [[ "$p" == eks ]] && eks+=("$cc")
    done
    ((${#eks[@]})) || continue
    table+="$wave $bake ${eks[*]}"$'\n'
    ((${#eks[@]} <= max)) || max=${#eks[@]}
  done <<<"$all"
  [[ -n "$table" ]] || die "render_rollout $service: no country on EKS in ${*:-$WAVES_FILE} (ECS countries are released by meridian-deploy ecs)"
  table="${table%$'\n'}"
  cat <<EOF
apiVersion: meridian.dev/v1alpha1
kind: Rollout
metadata:
  name: $(rollout_name "$service" "$@")
  labels:
    app.kubernetes.io/part-of: meridian
    app.kubernetes.io/name: ${service}
  annotations:
    meridian.dev/commit: "${sha}"
    meridian.dev/build-url: "${BUILDKITE_BUILD_URL:-local}"
spec:
  image: ${image}
  namespace: ${MERIDIAN_NAMESPACE}
  release: ${service}
  haltPolicy: RollbackWave
  maxParallel: ${max}
  waves:
EOF
  while read -r wave bake countries; do
    printf '    - name: wave-%s\n      bakeSeconds: %s\n      targets:\n' "$wave" "$(duration_seconds "$bake")"
    for cc in $countries; do
      # Quoted: YAML 1.1 parsers (kubectl's among them) read a bare `no` as false.
      printf '        - name: "%s"\n          kubeconfigSecret: kubeconfig-prod-%s\n' "$cc" "$cc"
    done
  done <<<"$table"
}

# country_platform CC: where Terraform runs CC's services, `eks` or `ecs`: the size profile of
# terraform/countries/CC/terraform.tfvars (`profile = "small"|"large"`), else the one of
# terraform/modules/plan's registry; small is ECS Fargate, large EKS (modules/plan's sizing).
# Read from Terraform so that the pipeline cannot disagree with what is deployed.
country_platform() {
  local cc="$1" profile="" tfvars="$MERIDIAN_ROOT/terraform/countries/$1/terraform.tfvars"
  [[ "$cc" =~ ^[a-z]{2}$ ]] || die "country must be a two-letter code: $cc"
  if [[ -r "$tfvars" ]]; then
    profile="$(sed -n 's/^[[:space:]]*profile[[:space:]]*=[[:space:]]*"\(small\|large\)".*/\1/p' "$tfvars" | tail -n 1)"
  fi
  if [[ -z "$profile" ]]; then
    profile="$(sed -n "s/^[[:space:]]*${cc}[[:space:]]*=[[:space:]]*{.*profile[[:space:]]*=[[:space:]]*\"\(small\|large\)\".*/\1/p" \
      "$MERIDIAN_ROOT/terraform/modules/plan/main.tf" | head -n 1)"
  fi
  case "$profile" in
    small) printf 'ecs\n' ;;
    large) printf 'eks\n' ;;
    *) die "country $cc is not in terraform/modules/plan's registry (no size profile)" ;;
  esac
}

# render_ecs_release SERVICE CC WAVE: the Release `meridian-deploy ecs` releases SERVICE with in
# the ECS country CC: render_release's spec (the same image, analysis and timings as on EKS),
# without the probe token Secret (there is no cluster to read it from: the command gets the token
# as a file) and with ECS_REPLICAS (default 2, terraform's ECS desired_count) replicas. Annotated
# with its country and wave so that a dry run says where each document goes.
render_ecs_release() {
  local service="$1" cc="$2" wave="$3" doc
  doc="$(STAGING_REPLICAS="${ECS_REPLICAS:-2}" MERIDIAN_PROBE_TOKEN_SECRET="" render_release "$service")" || return 1
  printf '# meridian-deploy ecs --target %s\n' "$(ecs_target_parameter "$service" "$cc")"
  awk -v cc="$cc" -v wave="$wave" '
    { print }
    /^  annotations:$/ {
      printf "    meridian.dev/platform: ecs\n    meridian.dev/country: \"%s\"\n    meridian.dev/wave: \"%s\"\n", cc, wave
    }' <<<"$doc"
}

# ecs_target_parameter SERVICE CC: the SSM parameter (in CC's account and region) where
# terraform/modules/ecs publishes SERVICE's blue-green target (cluster, services and target
# groups by colour, listener rules, preview URL): the JSON `meridian-deploy ecs --target` reads.
ecs_target_parameter() {
  printf '/meridian/prod/%s/ecs-deploy/%s\n' "$2" "$1"
}

rollout_name() { # rollout_name SERVICE [COUNTRY...] -> <service>-<sha12>[-<cc>...]
  local sha name
  sha="$(git_sha)"
  name="$1-${sha:0:12}"
  shift
  for cc in "$@"; do name+="-$cc"; done
  printf '%s\n' "$name"
}

# deployable_services: the services in slo.yaml. slo.yaml lists a service once its crate exists,
# so one without a crate is an error, not a skip.
deployable_services() {
  local s list
  list="$(slo_services)" || return 1
  for s in $list; do
    in_workspace "$s" || die "service $s is in $SLO_FILE but has no crate (services/$s/Cargo.toml): list a service once it exists"
    printf '%s\n' "$s"
  done
}
