#!/usr/bin/env bash
# Move the tag deployed/ENVIRONMENT to the commit just deployed everywhere; the next
# build's change summary starts from it.
#   buildkite/mark-deployed.sh ENVIRONMENT
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

environment="${1:?usage: mark-deployed.sh ENVIRONMENT}"
[[ "$environment" =~ ^[a-z]+$ ]] || die "bad environment: $environment"
sha="$(git_sha)"
git -C "$MERIDIAN_ROOT" tag --force "deployed/$environment" "$sha"
git -C "$MERIDIAN_ROOT" push --force origin "refs/tags/deployed/$environment"
log "deployed/$environment -> $sha"
