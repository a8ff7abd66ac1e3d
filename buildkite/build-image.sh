#!/usr/bin/env bash
# shellcheck disable=SC2016  # backticks in printf formats are Markdown for annotations
# Build and push one image, tagged with the git SHA.
#   buildkite/build-image.sh NAME      NAME = a service binary (streams, calls, ...) or operator
# Services share docker/Dockerfile (build arg SERVICE picks the binary); the operator
# (with the slo-gate CLI) has docker/operator.Dockerfile. A service listed in the
# pipeline whose crate is not in the workspace yet is reported as an annotation and
# not built (the deploy steps use the same rule, so nothing references a missing image).
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

name="${1:?usage: build-image.sh NAME}"
[[ "$name" =~ ^[a-z][a-z0-9-]*$ ]] || die "bad image name: $name"

if ! in_workspace "$name"; then
  printf ':construction: `%s` is in the pipeline but not in the workspace yet: no image built.\n' "$name" |
    annotate warning "image-$name"
  exit 0
fi

ref="$(image_ref "$name")"
cache="${MERIDIAN_REGISTRY}/${MERIDIAN_IMAGE_PREFIX}${name}:buildcache"
if [[ "$name" == "operator" ]]; then
  dockerfile="docker/operator.Dockerfile"
  build_args=()
else
  dockerfile="docker/Dockerfile"
  build_args=(--build-arg "SERVICE=$name")
fi

cd "$MERIDIAN_ROOT"
log "building $ref from $dockerfile"
docker buildx build \
  --file "$dockerfile" \
  "${build_args[@]}" \
  --label "org.opencontainers.image.revision=$(git_sha)" \
  --label "org.opencontainers.image.source=${BUILDKITE_REPO:-local}" \
  --cache-from "type=registry,ref=$cache" \
  --cache-to "type=registry,ref=$cache,mode=max" \
  --provenance=true \
  --tag "$ref" \
  --push \
  .
printf 'pushed `%s`\n' "$ref" | annotate info "image-$name"
