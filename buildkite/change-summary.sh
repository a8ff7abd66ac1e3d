#!/usr/bin/env bash
# shellcheck disable=SC2016  # backticks in printf formats are Markdown for annotations
# Summarise what production is about to receive, as a build annotation shown next to
# the block step: commits since the last production deploy (tag deployed/production),
# services touched, migrations (reviewed as expand/contract), delivery changes, images.
#   buildkite/change-summary.sh [BASE_REF]
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

bullets() { # bullets TEXT: one Markdown bullet per line, "- none" when empty
  local line
  if [[ -z "$1" ]]; then
    printf -- '- none\n'
    return
  fi
  while IFS= read -r line; do printf -- '- %s\n' "$line"; done <<<"$1"
}

cd "$MERIDIAN_ROOT"
sha="$(git_sha)"
base="${1:-}"
if [[ -z "$base" ]]; then
  git fetch --quiet origin 'refs/tags/deployed/*:refs/tags/deployed/*' 2>/dev/null || true
  if git rev-parse --verify --quiet 'deployed/production^{commit}' >/dev/null; then
    base="deployed/production"
  fi
fi

{
  printf '### Change summary for production: `%s`\n\n' "${sha:0:12}"
  if [[ -z "$base" ]]; then
    printf 'No previous production deploy recorded (tag `deployed/production`): this is the first.\n\n'
    range="$sha"
  else
    printf 'Since `%s` (`%s`):\n\n' "$base" "$(git rev-parse --short=12 "$base")"
    range="$base..$sha"
  fi
  printf '**Commits**\n\n'
  git log --no-merges --format='- `%h` %s (%an)' -n 50 "$range"
  printf '\n**Services touched**\n\n'
  touched="$(git diff --name-only "${base:-$(git hash-object -t tree /dev/null)}" "$sha" |
    awk -F/ '$1 == "services" || $1 == "migrations" { print $2 } $1 == "operator" { print "operator" }' | sort -u)"
  bullets "$touched"
  printf '\n**Migrations** (must be expand/contract: the old colour keeps running on the new schema)\n\n'
  migrations="$(git diff --name-only --diff-filter=AMR "${base:-$(git hash-object -t tree /dev/null)}" "$sha" -- migrations/)"
  bullets "$migrations"
  printf '\n**Delivery changes** (buildkite/, docker/, runbooks/, terraform/)\n\n'
  delivery="$(git diff --stat=100 "${base:-$(git hash-object -t tree /dev/null)}" "$sha" -- buildkite docker runbooks terraform | tail -n 1)"
  bullets "$delivery"
  printf '\n**Waves**: see buildkite/waves.conf; SLOs: buildkite/slo.yaml. Rollback: runbooks/procedures/rollback.md.\n'
} | annotate info change-summary
