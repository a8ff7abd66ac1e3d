#!/usr/bin/env bash
# Terraform checks, offline. Run from anywhere: bash tests/policy/terraform.sh
#
#  1. terraform fmt -check -recursive terraform/      (+ a badly formatted fixture must fail);
#     country roots are thin: every file but backend.tf/terraform.tfvars is a symlink to the one
#     canonical copy in terraform/countries/_shared/ (+ a self-check that a real file or a
#     foreign link fails), they call modules/stack and carry `moved` blocks for every module
#     they used to call themselves
#  2. terraform init -backend=false + terraform test in the provider-free plan module; the same
#     with a mocked aws provider (schema from a local provider mirror, never downloaded) in every
#     other module that has tests/ (identity, secrets, alb, ecs, stack: admin routes never on the
#     public listener, AUTH_* for every service on ECS and EKS, calls secrets only by reference);
#     mutation self-checks prove those tests fail when the property is broken; terraform
#     validate of every module and every country root against the mirror (a CLI config whose only
#     provider installation method is a filesystem_mirror of it, TF_CLI_CONFIG_FILE); the deployed
#     services equal the Cargo workspace's service crates (tomllib), ECS image names equal what
#     buildkite/lib.sh image_ref pushes, and `terraform graph` shows every ECS service after the
#     listener rules of its target groups
#  3. checkov --framework terraform --skip-download over terraform/ with the custom checks of
#     tests/policy/checkov-checks (CKV_MERIDIAN_1: no wildcard under StringEquals/ArnEquals)
#     (skips are inline, one resource each, every one listed with its reason in
#     tests/policy/checkov-skips.md)
#     (+ a bad fixture must fail with the expected check ids)
#  4. tests/policy/test_terraform_policy.py: Aurora / EKS / secret-variable rules following country
#     inputs through modules/stack into the modules, run on the real stacks and on failing fixtures
#
# Tools: terraform (>= 1.11) must be on PATH, with the AWS provider (5.100+) in a local
# filesystem mirror (TF_PLUGIN_MIRROR, else terraform's usual plugin directories, else
# /opt/tf-plugins); checkov and python-hcl2 are installed (pinned,
# tests/policy/requirements.txt) into "${MERIDIAN_CACHE:-$HOME/.cache/meridian}/venv" only when
# missing or when requirements.txt changed. Nothing is skipped silently: every check either
# passes or fails, and the last line is "terraform-policy: N passed, N failed".
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
POLICY="$REPO/tests/policy"
CACHE="${MERIDIAN_CACHE:-$HOME/.cache/meridian}"
VENV="$CACHE/venv"
HCL2_LIB="$VENV/hcl2-lib"
REQS="$POLICY/requirements.txt"
STAMP="$VENV/.meridian-terraform-requirements.sha256"

# No ~/.terraformrc: until the provider mirror is found (below) terraform runs with an empty CLI
# config; then with one whose only provider installation method is that filesystem mirror.
export TF_CLI_CONFIG_FILE=/dev/null
export TF_IN_AUTOMATION=1
export TF_INPUT=0
export CHECKOV_RUN_SCA_PACKAGE_SCAN_V2=false
export BC_SKIP_MAPPING=TRUE

PASSED=0
FAILED=0
FAILURES=()
START=$SECONDS

pass() {
  PASSED=$((PASSED + 1))
  printf 'PASS %s\n' "$1"
}

fail() {
  FAILED=$((FAILED + 1))
  FAILURES+=("$1")
  printf 'FAIL %s\n' "$1"
}

# run NAME CMD... : run a check, show its output only when it fails.
run() {
  local name="$1" log
  shift
  log="$(mktemp)"
  if "$@" >"$log" 2>&1; then
    pass "$name"
    # Show the tool's own tally (e.g. "Success! 22 passed, 0 failed.") when it has one.
    grep -E '[0-9]+ passed, [0-9]+ failed|Passed checks: [0-9]+' "$log" | tail -n 1 | sed 's/^/     /' || true
  else
    cat "$log"
    fail "$name"
  fi
  rm -f "$log"
}

summary() {
  printf '\n'
  if ((FAILED > 0)); then
    printf 'failed checks:\n'
    printf '  - %s\n' "${FAILURES[@]}"
  fi
  printf 'terraform checks took %ds\n' "$((SECONDS - START))"
  # The closing line in the plain "N passed, N failed" form CI reads (one word + colon before it).
  printf 'terraform-policy: %d passed, %d failed\n' "$PASSED" "$FAILED"
}

# ----------------------------------------------------------------------------- tools

if ! command -v terraform >/dev/null 2>&1; then
  cat >&2 <<'EOF'
FAIL terraform is not on PATH.
  These checks need Terraform >= 1.11 (no providers are downloaded). Install it with e.g.
    apt-get install -y gnupg software-properties-common curl &&
    curl -fsSL https://apt.releases.hashicorp.com/gpg | gpg --dearmor -o /usr/share/keyrings/hashicorp.gpg &&
    echo "deb [signed-by=/usr/share/keyrings/hashicorp.gpg] https://apt.releases.hashicorp.com $(lsb_release -cs) main" \
      > /etc/apt/sources.list.d/hashicorp.list && apt-get update && apt-get install -y terraform
  or unzip the release from https://developer.hashicorp.com/terraform/install into a directory on PATH,
  or use tfenv: `tfenv install 1.11.4 && tfenv use 1.11.4`.
EOF
  printf 'terraform-policy: 0 passed, 1 failed\n'
  exit 1
fi

tf_version="$(terraform version -json | python3 -c 'import json,sys; print(json.load(sys.stdin)["terraform_version"])')"
case "$tf_version" in
  0.* | 1.[0-9].* | 1.10.*)
    printf 'FAIL terraform %s is too old: install Terraform >= 1.11 (see tests/policy/terraform.sh)\n' "$tf_version" >&2
    printf 'terraform-policy: 0 passed, 1 failed\n'
    exit 1
    ;;
esac
printf 'terraform %s\n' "$tf_version"

ensure_venv() {
  local want have=""
  want="$(sha256sum "$REQS" | cut -d' ' -f1)"
  [[ -f "$STAMP" ]] && have="$(cat "$STAMP")"
  if [[ "$want" == "$have" && -x "$VENV/bin/checkov" && -f "$HCL2_LIB/hcl2/api.py" ]]; then
    return 0
  fi
  printf 'installing pinned tools from %s into %s\n' "${REQS#"$REPO"/}" "$VENV"
  mkdir -p "$CACHE"
  [[ -x "$VENV/bin/python" ]] || python3 -m venv "$VENV"
  local venv_reqs hcl2_reqs
  venv_reqs="$(mktemp)"
  hcl2_reqs="$(mktemp)"
  grep -v '^[[:space:]]*#' "$REQS" | grep -v 'target: hcl2-lib' | sed 's/[[:space:]]*#.*//' | grep . >"$venv_reqs" || true
  grep 'target: hcl2-lib' "$REQS" | grep -v '^[[:space:]]*#' | sed 's/[[:space:]]*#.*//' >"$hcl2_reqs"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check -r "$venv_reqs"
  rm -rf "$HCL2_LIB"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check --no-deps --target "$HCL2_LIB" -r "$hcl2_reqs"
  rm -f "$venv_reqs" "$hcl2_reqs"
  printf '%s\n' "$want" >"$STAMP"
}

if ! ensure_venv; then
  fail "install pinned checkov/python-hcl2 from tests/policy/requirements.txt (needs PyPI)"
  summary
  exit 1
fi

# ----------------------------------------------------------------------------- 1. fmt

cd "$REPO"
run "terraform fmt -check -recursive terraform/" terraform fmt -check -recursive -diff terraform/
fmt_fixture_rejected() {
  # Must fail *because of formatting*: fmt lists the file it would rewrite and exits 3.
  local out rc=0
  out="$(terraform fmt -check -list=true tests/policy/fixtures/fmt/unformatted.tf 2>&1)" || rc=$?
  echo "$out"
  [[ $rc -ne 0 && "$out" == *unformatted.tf* ]]
}
run "terraform fmt -check rejects a badly formatted fixture (tests/policy/fixtures/fmt)" fmt_fixture_rejected

# Country roots share one copy of everything but backend.tf and terraform.tfvars: the canonical
# files live in terraform/countries/_shared/ (not a root: no backend, no local.country; the
# policy test skips it and .checkov.yaml's skip-path keeps checkov from scanning it a fifth
# time) and each root's copy is a relative symlink to it, so a change is made once.
SHARED_FILES="main.tf moved.tf variables.tf outputs.tf versions.tf"

# country_dirs COUNTRIES_DIR: the roots, i.e. every directory except _shared (and any _*/.*).
country_dirs() {
  local dir
  for dir in "$1"/*/; do
    case "$(basename "$dir")" in _* | .*) continue ;; esac
    printf '%s\n' "${dir%/}"
  done
}

# roots_link_shared COUNTRIES_DIR: every root's shared file is a symlink to ../_shared/<file>;
# the only real .tf file in a root is backend.tf, with the root's own state key.
roots_link_shared() {
  local countries="$1" shared="$1/_shared" dir cc f tf bad=0 n=0
  for f in $SHARED_FILES; do
    if [[ -L "$shared/$f" || ! -f "$shared/$f" ]]; then
      echo "$shared/$f: the canonical copy must be a regular file"
      bad=1
    fi
  done
  for f in backend.tf terraform.tfvars; do
    [[ ! -e "$shared/$f" ]] || {
      echo "$shared/$f: per-country file in _shared (it would make _shared look like a root)"
      bad=1
    }
  done
  while read -r dir; do
    [[ -n "$dir" ]] || continue
    n=$((n + 1))
    cc="$(basename "$dir")"
    for f in $SHARED_FILES; do
      if [[ ! -L "$dir/$f" ]]; then
        echo "$dir/$f: must be a symlink to the canonical copy (ln -sfn ../_shared/$f $f), found a real file or nothing"
        bad=1
      elif [[ "$(readlink "$dir/$f")" != "../_shared/$f" ]]; then
        echo "$dir/$f: links to '$(readlink "$dir/$f")', must link to '../_shared/$f'"
        bad=1
      elif [[ ! -f "$dir/$f" ]]; then
        echo "$dir/$f: dangling link (no $shared/$f)"
        bad=1
      fi
    done
    for tf in "$dir"/*.tf; do
      [[ -e "$tf" || -L "$tf" ]] || continue
      f="$(basename "$tf")"
      if [[ "$f" != backend.tf && " $SHARED_FILES " != *" $f "* ]]; then
        echo "$dir/$f: per-country .tf file; only backend.tf may differ between roots (shared code goes in _shared/)"
        bad=1
      fi
    done
    for f in backend.tf terraform.tfvars; do
      if [[ -L "$dir/$f" || ! -f "$dir/$f" ]]; then
        echo "$dir/$f: must be the country's own regular file"
        bad=1
      fi
    done
    grep -qs "key *= *\"countries/$cc/terraform.tfstate\"" "$dir/backend.tf" || {
      echo "$dir/backend.tf: state key must be countries/$cc/terraform.tfstate"
      bad=1
    }
  done < <(country_dirs "$countries")
  echo "$n country roots link $SHARED_FILES to $shared"
  ((bad == 0 && n > 0))
}
run "country roots link their shared files to terraform/countries/_shared (only backend.tf, terraform.tfvars differ)" \
  roots_link_shared terraform/countries

roots_link_check_rejects_copies() {
  # Self-check on a scratch copy of the real roots (cp -a keeps the links): a root whose shared
  # file is a real file again (cp -L, an editor that replaced the link) or a link to another
  # root must fail, naming that file.
  local tmp out rc=0 ok=1
  tmp="$(mktemp -d)"
  cp -a terraform/countries "$tmp/countries"
  cp --remove-destination "$tmp/countries/_shared/variables.tf" "$tmp/countries/se/variables.tf"
  ln -sfn ../se/outputs.tf "$tmp/countries/dk/outputs.tf"
  out="$(roots_link_shared "$tmp/countries" 2>&1)" || rc=$?
  echo "$out"
  [[ $rc -ne 0 ]] || ok=0
  [[ "$out" == *"countries/se/variables.tf: must be a symlink"* ]] || ok=0
  [[ "$out" == *"countries/dk/outputs.tf: links to '../se/outputs.tf'"* ]] || ok=0
  rm -rf "$tmp"
  ((ok == 1))
}
run "the link check rejects a root with a real file or a foreign link instead of ../_shared/<file>" \
  roots_link_check_rejects_copies

# Modules each root called itself before modules/stack existed; their state now lives under
# module.stack.module.<name>. Without a moved block for each, applying the new layout to an
# existing country would destroy and recreate that module's resources.
PRE_STACK_MODULES="plan secrets network aurora eks alb ecs observability"

roots_move_into_stack() {
  local dir m calls stack_calls bad=0 n=0
  stack_calls=" $(grep -hoE '^module "[a-z_]+"' "$REPO"/terraform/modules/stack/*.tf | cut -d'"' -f2 | tr '\n' ' ')"
  for m in $PRE_STACK_MODULES; do
    if [[ "$stack_calls" != *" $m "* ]]; then
      echo "terraform/modules/stack no longer calls module \"$m\": the roots' moved blocks for it point nowhere"
      bad=1
    fi
  done
  while read -r dir; do
    [[ -n "$dir" ]] || continue
    dir="$dir/"
    n=$((n + 1))
    calls="$(grep -hoE '^module "[a-z_]+"' "$dir"*.tf | cut -d'"' -f2 | tr '\n' ' ')"
    if [[ "$calls" != "stack " ]]; then
      echo "${dir#"$REPO"/}: must call only module \"stack\" (found: ${calls:-nothing})"
      bad=1
    fi
    for m in $PRE_STACK_MODULES; do
      if ! grep -Pzq "(?m)^moved \\{\n  from = module\\.$m\n  to   = module\\.stack\\.module\\.$m\n\\}" "$dir"*.tf; then
        echo "${dir#"$REPO"/}: no \`moved { from = module.$m to = module.stack.module.$m }\`"
        bad=1
      fi
    done
  done < <(country_dirs "$REPO/terraform/countries")
  echo "$n country roots call modules/stack and move: $PRE_STACK_MODULES"
  ((bad == 0 && n > 0))
}
run "country roots call modules/stack and move every pre-stack module into it" roots_move_into_stack

# ----------------------------------------------------------------------------- 2. terraform test (offline)

plan_test() {
  local dir="$REPO/terraform/modules/plan"
  # The plan module requires no providers: init only installs local child modules.
  terraform -chdir="$dir" init -backend=false -input=false -no-color >/dev/null
  if grep -rqs 'required_providers' "$dir"/*.tf; then
    echo "terraform/modules/plan must stay provider-free (found required_providers)" >&2
    return 1
  fi
  local out rc=0
  out="$(terraform -chdir="$dir" test -no-color 2>&1)" || rc=$?
  echo "$out"
  if [[ $rc -eq 0 ]] && ! grep -qE 'Success! [1-9][0-9]* passed, 0 failed' <<<"$out"; then
    echo "terraform test ran no test in terraform/modules/plan/tests"
    return 1
  fi
  return "$rc"
}
run "terraform test (terraform/modules/plan, offline)" plan_test

# The other modules' tests mock the aws provider, but terraform still needs its schema: the
# provider comes from a local filesystem mirror (no download). Mocked providers cannot open
# ephemeral resources: modules/secrets generates values on a separate aws.generator
# configuration that the tests switch off or override (see its versions.tf).
find_provider_mirror() {
  local dir
  for dir in ${TF_PLUGIN_MIRROR:-} "$HOME/.terraform.d/plugins" "${XDG_DATA_HOME:-$HOME/.local/share}/terraform/plugins" \
    /usr/local/share/terraform/plugins /usr/share/terraform/plugins /opt/tf-plugins; do
    if compgen -G "$dir/registry.terraform.io/hashicorp/aws/*/linux_amd64/terraform-provider-aws_*" >/dev/null; then
      printf '%s\n' "$dir"
      return 0
    fi
  done
  return 1
}

MIRROR="$(find_provider_mirror || true)"
# A CLI config whose only installation method is the mirror (no `direct` block): `terraform init`
# installs the aws provider from it and can never reach a registry.
CLI_CONFIG="$(mktemp)"
trap 'rm -f "$CLI_CONFIG"' EXIT
if [[ -n "$MIRROR" ]]; then
  cat >"$CLI_CONFIG" <<EOF
provider_installation {
  filesystem_mirror {
    path    = "$MIRROR"
    include = ["registry.terraform.io/hashicorp/*"]
  }
}
EOF
  export TF_CLI_CONFIG_FILE="$CLI_CONFIG"
fi
MOCKED_TEST_MODULES="$(for d in "$REPO"/terraform/modules/*/tests; do m="$(basename "$(dirname "$d")")"; [[ "$m" == plan ]] || printf '%s ' "$m"; done)"

# scratch_copy DEST: terraform/ and what its modules read from the rest of the repository (the
# plan module: the Cargo workspace manifests, buildkite/images.conf; observability: runbooks/),
# in the same layout under DEST, for checks that change or add files.
scratch_copy() {
  (cd "$REPO" && tar --exclude=.terraform --exclude=.terraform.lock.hcl -cf - terraform Cargo.toml services/*/Cargo.toml buildkite/images.conf runbooks) |
    tar -xf - -C "$1"
}

# tf_init DIR: init against the mirror only (no registry), quietly unless it fails.
tf_init() {
  local out
  out="$(terraform -chdir="$1" init -backend=false -input=false -no-color 2>&1)" || {
    echo "$out"
    return 1
  }
}

# mocked_test DIR [FILTER]: terraform test in DIR; must pass and run at least one test.
mocked_test() {
  local dir="$1" out rc=0
  tf_init "$dir" || return 1
  out="$(terraform -chdir="$dir" test -no-color 2>&1)" || rc=$?
  # Mocked applies "leave" resources that never existed; that note is noise here.
  grep -vE '^  - |left the following resources in state|need to be cleaned up manually|\.tftest\.hcl/' <<<"$out"
  if [[ $rc -eq 0 ]] && ! grep -qE 'Success! [1-9][0-9]* passed, 0 failed' <<<"$out"; then
    echo "terraform test ran no test in $dir/tests"
    return 1
  fi
  return "$rc"
}

if [[ -z "$MIRROR" ]]; then
  fail "find the AWS provider in a local mirror (set TF_PLUGIN_MIRROR to a directory holding registry.terraform.io/hashicorp/aws/<version>/linux_amd64/, e.g. from \`terraform providers mirror DIR\` run where the registry is reachable)"
else
  printf 'aws provider mirror: %s\n' "$MIRROR"
  for m in $MOCKED_TEST_MODULES; do
    run "terraform test (terraform/modules/$m, mocked aws provider)" mocked_test "$REPO/terraform/modules/$m"
  done

  validate_roots() {
    local dir bad=0 out
    while read -r dir; do
      [[ -n "$dir" ]] || continue
      if ! tf_init "$dir" || ! out="$(terraform -chdir="$dir" validate -no-color 2>&1)"; then
        echo "${out:-}"
        echo "${dir#"$REPO"/}: terraform validate failed"
        bad=1
      else
        echo "${dir#"$REPO"/}: $out"
      fi
    done < <(country_dirs "$REPO/terraform/countries")
    ((bad == 0))
  }
  run "terraform validate of every country root (aws provider from the mirror)" validate_roots

  # validate_modules: every module directory under terraform/modules against the provider's real
  # schema. A module that declares configuration_aliases (secrets: aws.generator; backup: aws.dr;
  # stack: both) is validated on a scratch copy with those aliased providers configured; one
  # that cannot be a root (modules/secrets/generated: an ephemeral output) through a caller.
  validate_modules() {
    local dir rel bad=0 n=0 out tmp target
    while read -r dir; do
      [[ -n "$dir" ]] || continue
      n=$((n + 1))
      rel="${dir#"$REPO"/terraform/modules/}"
      tmp="$(mktemp -d)"
      target="$dir"
      if grep -qs 'configuration_aliases' "$dir"/*.tf; then
        scratch_copy "$tmp"
        target="$tmp/terraform/modules/$rel"
        local alias
        grep -hoE 'configuration_aliases *= *\[[^]]*\]' "$dir"/*.tf | grep -oE 'aws\.[a-z_]+' | cut -d. -f2 | sort -u |
          while read -r alias; do
            printf 'provider "aws" {\n  alias = "%s"\n}\n' "$alias"
          done >"$target/zz_validate_providers.tf"
      elif grep -qsE '^[[:space:]]*ephemeral[[:space:]]*=[[:space:]]*true' "$dir"/*.tf; then
        target="$tmp/caller"
        mkdir -p "$target"
        printf 'module "under_test" {\n  source = "%s"\n  length = 48\n}\n' "$dir" >"$target/main.tf"
      fi
      if ! tf_init "$target" || ! out="$(terraform -chdir="$target" validate -no-color 2>&1)"; then
        echo "${out:-}"
        echo "terraform/modules/$rel: terraform validate failed"
        bad=1
      else
        echo "terraform/modules/$rel: $(tr '\n' ' ' <<<"$out")"
      fi
      rm -rf "$tmp"
    done < <(find "$REPO/terraform/modules" -name '*.tf' -not -path '*/.terraform/*' -printf '%h\n' | sort -u)
    echo "$n modules validated"
    ((bad == 0 && n > 0))
  }
  run "terraform validate of every module under terraform/modules (aws provider from the mirror)" validate_modules

  # The deployed services are the workspace's: members services/<name> whose crate has a [[bin]]
  # <name>, read here independently (tomllib) and compared with what the plan module derives.
  workspace_services_derived() {
    local want got
    want="$(python3 - "$REPO" <<'PY2'
import json, pathlib, sys, tomllib
root = pathlib.Path(sys.argv[1])
out = []
for m in tomllib.loads((root / "Cargo.toml").read_text())["workspace"]["members"]:
    parts = m.split("/")
    if len(parts) != 2 or parts[0] != "services" or not (root / m / "Cargo.toml").is_file():
        continue
    bins = [b.get("name") for b in tomllib.loads((root / m / "Cargo.toml").read_text()).get("bin", [])]
    if parts[1] in bins:
        out.append(parts[1])
print(json.dumps(out))
PY2
)" || return 1
    got="$(echo 'jsonencode(keys(local.services))' | terraform -chdir="$REPO/terraform/modules/plan" console -var country=se 2>&1)" || {
      echo "$got"
      return 1
    }
    got="$(python3 -c 'import json,sys; print(json.dumps(sorted(json.loads(json.loads(sys.argv[1])))))' "$got")"
    want_sorted="$(python3 -c 'import json,sys; print(json.dumps(sorted(json.loads(sys.argv[1]))))' "$want")"
    echo "workspace (Cargo.toml, tomllib): $want; terraform/modules/plan services: $got"
    [[ "$got" == "$want_sorted" && "$want" != "[]" ]]
  }
  run "the deployed services are the workspace's service crates (Cargo.toml members services/<name> with a binary <name>)" workspace_services_derived

  # Image names have one source (buildkite/images.conf): what Buildkite pushes (lib.sh image_ref)
  # is what the plan module names for ECS (the ecs and stack tests check the task definitions
  # run <registry>/<image_repository>:<tag>).
  images_agree_with_buildkite() {
    local repos s want got bad=0
    repos="$(echo 'jsonencode({ for k, v in local.services : k => v.image_repository })' | terraform -chdir="$REPO/terraform/modules/plan" console -var country=dk 2>&1)" || {
      echo "$repos"
      return 1
    }
    for s in $(python3 -c 'import json,sys; print(" ".join(json.loads(json.loads(sys.argv[1]))))' "$repos"); do
      want="$(MERIDIAN_REGISTRY=registry.example/meridian BUILDKITE_COMMIT=0123abc bash -c '. "$1/buildkite/lib.sh" && image_ref "$2"' _ "$REPO" "$s")" || return 1
      got="registry.example/meridian/$(python3 -c 'import json,sys; print(json.loads(json.loads(sys.argv[1]))[sys.argv[2]])' "$repos" "$s"):0123abc"
      echo "$s: buildkite pushes $want, ECS pulls $got"
      [[ "$want" == "$got" ]] || bad=1
    done
    ((bad == 0))
  }
  run "ECS pulls the image names Buildkite pushes (buildkite/images.conf, lib.sh image_ref)" images_agree_with_buildkite

  # Ordering only the graph shows: every ECS service is created after the listener rules that
  # attach its target groups to a load balancer (ECS rejects a target group without one).
  # terraform graph of the dk root (a scratch copy with a local backend; no AWS call).
  ecs_after_listener_rules() {
    local tmp dir rc=0
    tmp="$(mktemp -d)"
    scratch_copy "$tmp"
    dir="$tmp/terraform/countries/dk"
    printf 'terraform {\n  backend "local" {}\n}\n' >"$dir/zz_local_backend_override.tf"
    if ! terraform -chdir="$dir" init -input=false -no-color >"$tmp/init.log" 2>&1; then
      cat "$tmp/init.log"
      rm -rf "$tmp"
      return 1
    fi
    terraform -chdir="$dir" graph -no-color >"$tmp/graph.dot" 2>&1 || rc=1
    ((rc == 0)) && python3 - "$tmp/graph.dot" <<'PY2' || rc=1
import re, sys
edges = {}
nodes = set()
for a, b in re.findall(r'"([^"]+)" -> "([^"]+)"', open(sys.argv[1]).read()):
    edges.setdefault(a, set()).add(b)
    nodes |= {a, b}
src = "module.stack.module.ecs.aws_ecs_service.service"
for dst in ("module.stack.module.alb.aws_lb_listener_rule.service", "module.stack.module.alb.aws_lb_listener_rule.admin"):
    seen, todo = set(), [src]
    while todo:
        n = todo.pop()
        if n in seen:
            continue
        seen.add(n)
        todo.extend(edges.get(n, ()))
    if src not in nodes or dst not in nodes:
        sys.exit(f"graph has no {src} or no {dst}: update this check")
    if dst not in seen:
        sys.exit(f"{src} does not depend on {dst}: ECS may create the service before its target group has a load balancer")
    print(f"{src} depends on {dst}")
PY2
    rm -rf "$tmp"
    return "$rc"
  }
  run "terraform graph: every ECS service depends on the listener rules of its target groups" ecs_after_listener_rules

  # Each mutation breaks one property on a scratch copy of terraform/; the module's tests must
  # then fail, naming it. A property test that cannot fail proves nothing.
  # mutation_caught MODULE FILE SED_EXPR EXPECTED_MESSAGE
  mutation_caught() {
    local module="$1" file="$2" expr="$3" want="$4" tmp out rc=0
    tmp="$(mktemp -d)"
    scratch_copy "$tmp"
    sed -i "$expr" "$tmp/terraform/$file"
    if cmp -s "$REPO/terraform/$file" "$tmp/terraform/$file"; then
      echo "the mutation ($expr) did not change terraform/$file: update the self-check"
      rm -rf "$tmp"
      return 1
    fi
    out="$(mocked_test "$tmp/terraform/modules/$module" 2>&1)" || rc=$?
    rm -rf "$tmp"
    if [[ $rc -eq 0 ]]; then
      echo "$out"
      echo "the tests of modules/$module still pass with terraform/$file mutated ($expr)"
      return 1
    fi
    if ! grep -qF "$want" <<<"$(tr '\n' ' ' <<<"$out" | tr -s ' ')"; then
      echo "$out"
      echo "the tests failed, but not with: $want"
      return 1
    fi
    echo "caught: $want"
  }
  run "mutation: admin 404 rule after the calls forward rule -> alb test fails" mutation_caught alb modules/alb/main.tf \
    's/priority     = each.value.priority - 1/priority     = each.value.priority + 1/' \
    "an admin path is forwarded by the public (internet-facing) listener"
  run "mutation: internal ALB made internet-facing -> alb test fails" mutation_caught alb modules/alb/main.tf \
    's/  internal           = true/  internal           = false/' \
    "the public ALB is internet-facing, the admin ALB is internal"
  run "mutation: ECS services lose the identity settings -> stack test fails" mutation_caught stack modules/stack/main.tf \
    's/      environment            = module.identity.service_env\[name\]/      environment            = {}/' \
    "on ECS, every service's task definition carries the four AUTH_* settings"
  run "mutation: EKS env Secrets lose the identity settings -> stack test fails" mutation_caught stack modules/stack/main.tf \
    's/    for name in keys(local.services) : name => merge(module.identity.service_env\[name\], {/    for name in keys(local.services) : name => merge({}, {/' \
    "on EKS, every service's env Secret (its Release's envFromSecret) carries the four AUTH_* settings"
  run "mutation: calls secrets dropped from the container secrets -> ecs test fails" mutation_caught ecs modules/ecs/main.tf \
    's/    secrets = \[for k, ref in local.secret_refs\[each.key\] : { name = k, valueFrom = ref }\]/    secrets = []/' \
    "calls gets its token key and webhook secrets from Secrets Manager"
  run "mutation: plain-environment secret check removed -> ecs test fails" mutation_caught ecs modules/ecs/main.tf \
    's/secret_name_pattern = .*/secret_name_pattern = "^$"/' \
    "rejects_a_secret_as_plain_environment"
  run "mutation: a client may call every service -> identity test fails" mutation_caught identity modules/identity/main.tf \
    's/ if contains(svcs, s)\]/]/' \
    "calls accepts only the client holding calls:admin"
  run "mutation: the pods' security group no longer admits the ALBs -> eks test fails" mutation_caught eks modules/eks/main.tf \
    's/  for_each = var.pod_ingress/  for_each = {}/' \
    "each load balancer's security group is admitted into the cluster security group"
  run "mutation: zonal shift off on the public ALB -> alb test fails" mutation_caught alb modules/alb/main.tf \
    's/  enable_zonal_shift = true/  enable_zonal_shift = false/' \
    "zonal shift is on for both ALBs"
  run "mutation: telephony ranges rate-limited again -> alb test fails" mutation_caught alb modules/alb/main.tf \
    's/          for_each = aws_wafv2_ip_set.rate_limit_exempt/          for_each = []/' \
    "the WAF rate rule counts and blocks only requests from outside"
  run "mutation: streams admin methods forwarded publicly -> alb test fails" mutation_caught alb modules/alb/main.tf \
    '/^resource "aws_lb_listener_rule" "admin_method_not_public" {/,/^}/s/  for_each = local.method_admin/  for_each = {}/' \
    "an admin method (PUT/DELETE of a streams user's limit) is forwarded by the public listener"
fi

# The secrets module's generate_values = false exists for offline tests only: no module or
# root may set it (a stack with it would create empty secrets).
generate_values_only_in_tests() {
  local hits
  hits="$(grep -rnE '^[[:space:]]*generate_values[[:space:]]*=' "$REPO/terraform" --include='*.tf' || true)"
  if [[ -n "$hits" ]]; then
    printf 'generate_values is set outside tests/*.tftest.hcl:\n%s\n' "$hits"
    return 1
  fi
  echo "generate_values is set only in tests"
}
run "no stack switches off secret generation (generate_values only in tests)" generate_values_only_in_tests

# ----------------------------------------------------------------------------- 3. checkov

CHECKOV_FIXTURE_MUST_FAIL="CKV_AWS_96 CKV_AWS_139 CKV_AWS_327 CKV_AWS_39 CKV_AWS_38 CKV_AWS_58 CKV_MERIDIAN_1"

# checkov_json DIR OUT: run checkov over DIR, JSON report to OUT (exit code ignored: judged below).
checkov_json() {
  "$VENV/bin/checkov" --framework terraform --skip-download --config-file "$REPO/terraform/.checkov.yaml" \
    --external-checks-dir "$POLICY/checkov-checks" -d "$1" -o json >"$2" 2>"$2.err" || true
  if [[ ! -s "$2" ]]; then
    cat "$2.err"
    echo "checkov produced no report for $1"
    return 1
  fi
}

# checkov_judge REPORT [IDS...]: with no IDS, fail on any failed check or parsing error;
# with IDS, fail unless every one of them failed (a bad fixture must be caught for the right reason).
checkov_judge() {
  "$VENV/bin/python" - "$@" <<'PY'
import json, sys
report, want = sys.argv[1], set(sys.argv[2:])
data = json.load(open(report))
runs = data if isinstance(data, list) else [data]
failed, parse_errors, passed, skipped = [], 0, 0, 0
for run in runs:
    summary = run.get("summary", {})
    parse_errors += summary.get("parsing_errors", 0)
    passed += summary.get("passed", 0)
    skipped += summary.get("skipped", 0)
    failed += run.get("results", {}).get("failed_checks", [])
ids = {c["check_id"] for c in failed}
if parse_errors:
    print(f"checkov could not parse {parse_errors} file(s): their resources were not checked")
    sys.exit(1)
if want:
    missing = sorted(want - ids)
    print(f"checkov failed {len(ids)} check ids on the fixture; required {sorted(want)}; missing {missing}")
    sys.exit(1 if missing else 0)
for c in failed:
    print(f"{c['check_id']} {c['check_name']}\n    {c['resource']} {c['file_path']}:{c['file_line_range']}")
print(f"Passed checks: {passed}, Failed checks: {len(failed)}, Skipped checks: {skipped} (each skip documented)")
sys.exit(1 if failed or passed == 0 else 0)
PY
}

checkov_tree() {
  local out
  out="$(mktemp)"
  checkov_json "$REPO/terraform" "$out" && checkov_judge "$out"
  local rc=$?
  rm -f "$out" "$out.err"
  return "$rc"
}

checkov_fixture_caught() {
  local out
  out="$(mktemp)"
  # shellcheck disable=SC2086 # word splitting of the ID list is intended
  checkov_json "$POLICY/fixtures/checkov" "$out" && checkov_judge "$out" $CHECKOV_FIXTURE_MUST_FAIL
  local rc=$?
  rm -f "$out" "$out.err"
  return "$rc"
}

checkov_skips_documented() {
  # Every inline `checkov:skip=ID:reason` under terraform/ has a reason and a row in
  # checkov-skips.md; every row there is still used; .checkov.yaml has no global skip-check.
  local inline doc no_reason
  if grep -qE '^[[:space:]]*skip-check' "$REPO/terraform/.checkov.yaml"; then
    echo "terraform/.checkov.yaml must not skip checks globally (use an inline skip with a reason)"
    return 1
  fi
  no_reason="$(grep -rnE 'checkov:skip=[A-Z0-9_]+[[:space:]]*(:[[:space:]]*)?$' "$REPO/terraform" --include='*.tf' || true)"
  if [[ -n "$no_reason" ]]; then
    printf 'inline checkov skips without a reason:\n%s\n' "$no_reason"
    return 1
  fi
  inline="$(grep -rhoE 'checkov:skip=CKV2?_AWS_[0-9]+' "$REPO/terraform" --include='*.tf' | cut -d= -f2 | sort -u)"
  doc="$(grep -oE '^\| *.CKV2?_AWS_[0-9]+.' "$POLICY/checkov-skips.md" | grep -oE 'CKV2?_AWS_[0-9]+' | sort -u)"
  if [[ "$inline" != "$doc" ]]; then
    echo "inline skips (<) and tests/policy/checkov-skips.md (>) differ:"
    diff <(echo "$inline") <(echo "$doc") || true
    return 1
  fi
  echo "$(echo "$inline" | wc -l) skipped check ids, all documented"
}

run "checkov skips are inline, reasoned and documented (tests/policy/checkov-skips.md)" checkov_skips_documented
run "checkov --framework terraform --skip-download terraform/ (0 failed, 0 parse errors)" checkov_tree
run "checkov catches the bad fixture (${CHECKOV_FIXTURE_MUST_FAIL// /, })" checkov_fixture_caught

# ----------------------------------------------------------------------------- 4. policy test

policy_test() {
  PYTHONPATH="$HCL2_LIB${PYTHONPATH:+:$PYTHONPATH}" "$VENV/bin/python" "$POLICY/test_terraform_policy.py" --repo "$REPO"
}
run "policy test: Aurora, EKS and secret-variable rules on every country, each rule fails its fixture" policy_test

summary
((FAILED == 0))
