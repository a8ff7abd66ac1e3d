#!/usr/bin/env bash
# Shared helpers for the Buildkite step scripts. Source it; do not run it.
#   . "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
# shellcheck shell=bash

MERIDIAN_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SLO_FILE="${SLO_FILE:-$MERIDIAN_ROOT/buildkite/slo.yaml}"
WAVES_FILE="${WAVES_FILE:-$MERIDIAN_ROOT/buildkite/waves.conf}"
# Registry and repository prefix of every image: <registry>/meridian-<name>:<git sha>.
MERIDIAN_REGISTRY="${MERIDIAN_REGISTRY:-registry.meridian.internal/meridian}"
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

image_ref() { # image_ref NAME -> registry/meridian-NAME:SHA
  printf '%s/meridian-%s:%s\n' "$MERIDIAN_REGISTRY" "$1" "$(git_sha)"
}

# True when the binary's crate exists in the workspace. Services that are planned
# (learning, playlists, attendance) but not written yet are announced, not built or deployed.
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

# slo_table: parse $SLO_FILE slo.yaml (restricted format, see its header) into
# tab-separated lines: service, p99_ms, max_error_rate, path, requests, provisional.
# Exits non-zero, naming the line, on anything it does not understand.
slo_table() {
  local file="$SLO_FILE"
  [[ -r "$file" ]] || die "SLO file not readable: $file"
  awk '
    function fail(msg) { printf "error: %s:%d: %s\n", FILENAME, NR, msg > "/dev/stderr"; bad = 1; exit 1 }
    function num(v) { return v ~ /^[0-9]+(\.[0-9]+)?$/ }
    {
      line = $0
      sub(/[ \t]+#.*$/, "", line); sub(/^#.*$/, "", line); sub(/[ \t]+$/, "", line)
      if (line == "") next
      if (line ~ /\t/) fail("tabs are not allowed")
      match(line, /^ */); indent = RLENGTH
      body = substr(line, indent + 1)
      if (body !~ /^[a-z_][a-z0-9_-]*:( .*)?$/) fail("expected `key: value` or `key:`")
      key = body; sub(/:.*$/, "", key)
      val = body; sub(/^[^:]*:[ ]*/, "", val)
      gsub(/^["\047]|["\047]$/, "", val)
      if (indent == 0) {
        if (key == "version") { if (val != "1") fail("unsupported version " val); next }
        if ((key == "defaults" || key == "services") && val == "") { section = key; svc = ""; next }
        fail("unknown top-level key " key)
      } else if (indent == 2 && section == "defaults") {
        if (key != "requests" && key != "max_error_rate" && key != "p99_ms") fail("unknown default " key)
        if (!num(val)) fail(key " must be a number")
        def[key] = val
      } else if (indent == 2 && section == "services") {
        if (val != "") fail("service " key " must be a mapping")
        if (key in seen) fail("duplicate service " key)
        svc = key; seen[key] = 1; order[++n] = key
      } else if (indent == 4 && section == "services" && svc != "") {
        if (key == "path") {
          if (val !~ /^\/[A-Za-z0-9._~\/-]*$/) fail("path must be an absolute URL path")
        } else if (key == "provisional") {
          if (val != "true" && val != "false") fail("provisional must be true or false")
        } else if (key == "p99_ms" || key == "max_error_rate" || key == "requests") {
          if (!num(val)) fail(key " must be a number")
        } else fail("unknown service key " key)
        if ((svc SUBSEP key) in v) fail("duplicate key " key)
        v[svc, key] = val
      } else fail("unexpected indentation")
    }
    END {
      if (bad) exit 1
      if (n == 0) { printf "error: %s: no services\n", FILENAME > "/dev/stderr"; exit 1 }
      for (i = 1; i <= n; i++) {
        s = order[i]
        for (k in def) if (!((s SUBSEP k) in v)) v[s, k] = def[k]
        if (!((s SUBSEP "p99_ms") in v)) { printf "error: service %s has no p99_ms\n", s > "/dev/stderr"; exit 1 }
        if (!((s SUBSEP "path") in v)) { printf "error: service %s has no path\n", s > "/dev/stderr"; exit 1 }
        if (!((s SUBSEP "max_error_rate") in v)) { printf "error: service %s has no max_error_rate\n", s > "/dev/stderr"; exit 1 }
        if (!((s SUBSEP "requests") in v)) v[s, "requests"] = 200
        if (v[s, "max_error_rate"] + 0 > 1) { printf "error: service %s: max_error_rate is a fraction (0..1)\n", s > "/dev/stderr"; exit 1 }
        prov = ((s SUBSEP "provisional") in v) ? v[s, "provisional"] : "false"
        printf "%s\t%s\t%s\t%s\t%s\t%s\n", s, v[s, "p99_ms"], v[s, "max_error_rate"], v[s, "path"], v[s, "requests"], prov
      }
    }
  ' "$file"
}

# probe_setting NAME: NAME from the environment, else from Buildkite secrets
# (`buildkite-agent secret get NAME`), else fail naming both places.
probe_setting() {
  local name="$1" value="${!1:-}"
  if [[ -z "$value" ]] && command -v buildkite-agent >/dev/null 2>&1; then
    value="$(buildkite-agent secret get "$name" 2>/dev/null)" || value=""
  fi
  [[ -n "$value" ]] || die "$name is not set (environment or Buildkite secret $name); see buildkite/README.md, 'SLO probe identity'"
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

# slo_services: names of the services in slo.yaml, in file order.
slo_services() {
  local table
  table="$(slo_table)" || return 1
  cut -f1 <<<"$table"
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

# render_analysis SERVICE INDENT: the spec.analysis block for SERVICE from slo.yaml. The probe
# carries the slo-probe identity's token from the Secret $MERIDIAN_PROBE_TOKEN_SECRET (default
# slo-probe-token, key `token`, in the Release's namespace; set it empty for no token). The
# operator's Role may read only that Secret name (operator rbac --probe-token-secret).
render_analysis() {
  local service="$1" pad="$2" table row p99 err path requests secret
  secret="${MERIDIAN_PROBE_TOKEN_SECRET-slo-probe-token}"
  [[ -z "$secret" || (${#secret} -le 253 && "$secret" =~ ^[a-z0-9]([a-z0-9.-]*[a-z0-9])?$) ]] ||
    die "MERIDIAN_PROBE_TOKEN_SECRET is not a Secret name: $secret"
  table="$(slo_table)" || return 1
  row="$(awk -F'\t' -v s="$service" '$1 == s' <<<"$table")"
  [[ -n "$row" ]] || die "service $service is not in $SLO_FILE"
  IFS=$'\t' read -r _ p99 err path requests _ <<<"$row"
  cat <<EOF
${pad}analysis:
${pad}  probe:
${pad}    path: ${path}
${pad}    requests: ${requests}
${pad}    p99Ms: ${p99}
${pad}    maxErrorRate: ${err}
EOF
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
  local service="$1" image sha
  image="$(image_ref "$service")"
  sha="$(git_sha)"
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
    command: ["${service}", "migrate"]
$(render_analysis "$service" "  ")
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

# render_rollout SERVICE COUNTRY BAKE: a cluster-scoped Rollout releasing SERVICE at this
# commit to one country's production cluster (one wave: Buildkite orders the waves between
# countries; the Rollout releases, analyses and bakes inside one country). The Release it drives
# in the target cluster is named after the service, in $MERIDIAN_NAMESPACE.
render_rollout() {
  local service="$1" country="$2" bake="$3" sha image
  sha="$(git_sha)"
  image="$(image_ref "$service")"
  cat <<EOF
apiVersion: meridian.dev/v1alpha1
kind: Rollout
metadata:
  name: $(rollout_name "$service" "$country")
  labels:
    app.kubernetes.io/part-of: meridian
    app.kubernetes.io/name: ${service}
    meridian.dev/country: ${country}
  annotations:
    meridian.dev/commit: "${sha}"
    meridian.dev/build-url: "${BUILDKITE_BUILD_URL:-local}"
spec:
  image: ${image}
  namespace: ${MERIDIAN_NAMESPACE}
  release: ${service}
  haltPolicy: RollbackWave
  waves:
    - name: ${country}
      targets:
        - name: ${country}
          kubeconfigSecret: kubeconfig-prod-${country}
      bakeSeconds: $(duration_seconds "$bake")
EOF
}

rollout_name() { # rollout_name SERVICE COUNTRY -> <service>-<sha12>-<cc>
  local sha
  sha="$(git_sha)"
  printf '%s-%s-%s\n' "$1" "${sha:0:12}" "$2"
}

# deployable_services: services from slo.yaml whose crate exists in the workspace.
deployable_services() {
  local s list
  list="$(slo_services)" || return 1
  for s in $list; do
    if in_workspace "$s"; then
      printf '%s\n' "$s"
    fi
  done
}
