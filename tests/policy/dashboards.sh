#!/usr/bin/env bash
# Dashboard checks, against a REAL Prometheus: every panel of every dashboard in runbooks/dashboards
# must parse and return data from the series the platform really exports.
#
#   bash tests/policy/dashboards.sh        (tests/run calls it after the delivery policy checks)
#
# What it does, in order:
#  1. lints each dashboard JSON: a `datasource` template variable of type datasource, no
#     hard-coded datasource UID anywhere, unique panel ids and titles, every panel has a PromQL
#     target (+ fixture hardcoded-datasource.json must fail);
#     runbooks/check_runbooks.py must fail on a runbook page linking a panel that does not exist
#     (fixture runbooks-dangling-panel/, whose only problem that is);
#  2. starts `meridian serve --port P` (its own throwaway PostgreSQL: DATABASE_URL is unset for it;
#     a throwaway XDG_STATE_HOME for its dev keys, as tests/policy/gate.sh does), and serves the
#     operator's rendered /metrics text (operator/tests/fixtures/metrics.txt) with
#     `python3 -m http.server` from a temporary directory;
#  3. starts Prometheus (Debian's `prometheus` package, installed with apt-get when missing) with a
#     generated config scraping both every second and with runbooks/rules/*.rules.yml loaded
#     (copied with `interval:` set to 1s so the 30 s SLI group evaluates within seconds; the
#     expressions are untouched); `promtool check config` must accept it, every rule must
#     evaluate without error;
#  4. puts a little load on the platform with curl (stream starts incl. an idempotent retry and a
#     409 at the limit, a heartbeat, a stop, 400/401/403s, an admin limit change; a signed and an
#     unsigned call decision, the calls admin API and a routing change that bumps the snapshot
#     version; learning item reads, a 404 and a 403; attendance's visits page, a sign-in, sign-out,
#     delete and stream ticket, a 403; playlists' commands incl. a 412, a share link opened,
#     revoked (then 404), the analytics, a 403);
#  5. for EVERY target of every panel (template variables substituted: constants by their value,
#     multi-value query variables by their "All" regex, $__rate_interval = 1m, $__interval = 15s,
#     $__range = 1h) queries /api/v1/query: it must succeed and return at least one series, and
#     every metric name it mentions must be a scraped series or a recording rule Prometheus
#     loaded (so an `or vector(0)` or an `or` fallback cannot hide a typo). One ok/FAIL line per
#     panel; query variables (label_values) must return values too;
#  6. self-checks: fixture missing-series.json (a panel querying a series nobody exports) and
#     fallback-hides-typo.json (a misspelt series behind `or vector(0)`) must FAIL the same check,
#     so it cannot pass vacuously. Fixtures: tests/policy/fixtures/dashboards/README.md.
# Ends with "dashboards: N passed, M failed" (every line above counts); exit 1 on any failure.
# Nothing is skipped: a missing tool or input is a failure naming the fix.
#
# Needs: the debug binary ${CARGO_TARGET_DIR:-target}/debug/meridian (cargo build --workspace --bins),
# curl, python3, the PostgreSQL server binaries (meridian serve's throwaway database), prometheus +
# promtool (apt), and for the runbook fixture a YAML parser (the policy venv that
# tests/policy/delivery.sh creates, else python3 with PyYAML). OPERATOR_METRICS overrides the
# operator fixture's path (default operator/tests/fixtures/metrics.txt).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
FIX="$ROOT/tests/policy/fixtures/dashboards"
DASHBOARDS=(runbooks/dashboards/*.json)
OPERATOR_METRICS="${OPERATOR_METRICS:-$ROOT/operator/tests/fixtures/metrics.txt}"
CACHE="${MERIDIAN_CACHE:-$HOME/.cache/meridian}"
meridian="${CARGO_TARGET_DIR:-target}/debug/meridian"
started=$SECONDS

passed=0
failed=0
failures=()
pids=()
work="$(umask 077 && mktemp -d)"
cleanup() {
  local pid
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

ok() { passed=$((passed + 1)); printf '  ok    %s\n' "$1"; }
not_ok() {
  failed=$((failed + 1))
  failures+=("$1")
  printf '  FAIL  %s\n' "$1"
  local line
  if [[ -n "${2:-}" ]]; then
    while IFS= read -r line; do printf '        %s\n' "$line"; done <<<"$2"
  fi
}
finish() {
  echo "dashboards: finished in $((SECONDS - started))s"
  if ((failed)); then printf 'dashboards: failed: %s\n' "${failures[@]}"; fi
  echo "dashboards: $passed passed, $failed failed"
  ((failed == 0))
}
# fatal NAME DETAIL: a prerequisite is missing; nothing after it can run.
fatal() {
  not_ok "$1" "$2"
  finish || exit 1
}

# check NAME CMD...: CMD must succeed.
check() {
  local name="$1" out
  shift
  if out="$("$@" 2>&1)"; then ok "$name"; else not_ok "$name" "$out"; fi
}

# expect_fail NAME REGEX CMD...: CMD must fail, and its output must match REGEX (the reason).
expect_fail() {
  local name="fixture fails: $1" pattern="$2" out
  shift 2
  if out="$("$@" 2>&1)"; then
    not_ok "$name" "the fixture PASSED; the check cannot fail. Output:"$'\n'"$out"
  elif ! grep -Eq -- "$pattern" <<<"$out"; then
    not_ok "$name" "failed, but not with /$pattern/. Output:"$'\n'"$out"
  else
    ok "$name"
  fi
}

echo "dashboards: checks"

# ---------------------------------------------------------------- tools and inputs
for tool in curl python3; do
  command -v "$tool" >/dev/null 2>&1 || fatal "tool available: $tool" "not installed: apt-get install -y $tool"
done
if ! command -v prometheus >/dev/null 2>&1 || ! command -v promtool >/dev/null 2>&1; then
  echo "dashboards: installing prometheus (apt)"
  sudo=()
  ((EUID == 0)) || sudo=(sudo)
  if ! DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -q --no-install-recommends prometheus >"$work/apt.log" 2>&1; then
    "${sudo[@]}" apt-get update -q >>"$work/apt.log" 2>&1 || true
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -q --no-install-recommends prometheus >>"$work/apt.log" 2>&1 || true
  fi
  if ! command -v prometheus >/dev/null 2>&1 || ! command -v promtool >/dev/null 2>&1; then
    fatal "tool available: prometheus + promtool" \
      "apt-get install prometheus failed; install Debian's prometheus package (sudo apt-get install -y prometheus) and re-run:"$'\n'"$(tail -n 20 "$work/apt.log")"
  fi
fi
[[ -x "$meridian" ]] || fatal "binary available: $meridian" "missing: cargo build --workspace --bins (set CARGO_TARGET_DIR if you build elsewhere)"
[[ -s "$OPERATOR_METRICS" ]] || fatal "operator metrics fixture: ${OPERATOR_METRICS#"$ROOT"/}" \
  "missing or empty: it is the operator's real rendered /metrics text, checked in with the operator's metrics (the delivery dashboard's scrape target)"
[[ -e "${DASHBOARDS[0]}" ]] || fatal "dashboards exist" "no runbooks/dashboards/*.json"
PY="$CACHE/venv/bin/python"
[[ -x "$PY" ]] || PY=python3

# The checker: lint (static) and query (against Prometheus) modes. Standard library only.
cat >"$work/check.py" <<'PYEOF'
import json, re, sys, time, urllib.parse, urllib.request
from pathlib import Path

BUILTINS = {"__rate_interval": "1m", "__interval": "15s", "__range": "1h"}
KEYWORDS = {"and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right",
            "offset", "bool", "inf", "nan", "atan2"}


def panels(items):
    for p in items:
        if p.get("type") == "row":
            yield from panels(p.get("panels") or [])
        else:
            yield p


def lint(path):
    errors = []
    try:
        d = json.loads(Path(path).read_text())
    except (OSError, ValueError) as e:
        return [f"not valid JSON: {e}"]
    if not d.get("uid") or not d.get("title"):
        errors.append("dashboard without uid or title")
    if "__inputs" in d:
        errors.append("__inputs present (an export 'for sharing externally'): export without it")
    variables = (d.get("templating") or {}).get("list") or []
    if not any(v.get("name") == "datasource" and v.get("type") == "datasource" and v.get("query") == "prometheus"
               for v in variables):
        errors.append("no template variable `datasource` of type datasource (query prometheus)")

    def walk(node, where):
        if isinstance(node, dict):
            ds = node.get("datasource")
            if isinstance(ds, dict) and ds.get("type") != "grafana":
                if ds.get("uid") not in ("${datasource}", "$datasource"):
                    errors.append(f"{where}: hard-coded datasource uid {ds.get('uid')!r} (use ${{datasource}})")
            elif isinstance(ds, str) and ds not in ("${datasource}", "$datasource", "-- Grafana --"):
                errors.append(f"{where}: hard-coded datasource {ds!r} (use ${{datasource}})")
            for k, v in node.items():
                walk(v, f"{where}.{k}" if where else k)
        elif isinstance(node, list):
            for i, v in enumerate(node):
                walk(v, f"{where}[{i}]")

    walk(d, "")
    ids, titles = set(), set()
    all_panels = list(panels(d.get("panels") or []))
    for p in [*all_panels, *[r for r in d.get("panels") or [] if r.get("type") == "row"]]:
        if p.get("id") in ids:
            errors.append(f"duplicate panel id {p.get('id')}")
        ids.add(p.get("id"))
    for p in all_panels:
        t = p.get("title") or ""
        if not t:
            errors.append(f"panel {p.get('id')} has no title (runbook pages link panels by title)")
        elif t in titles:
            errors.append(f"duplicate panel title {t!r} (runbook pages link panels by title)")
        titles.add(t)
        exprs = [x.get("expr") for x in p.get("targets") or []]
        if not exprs or not all(isinstance(e, str) and e.strip() for e in exprs):
            errors.append(f"panel {t!r} has no PromQL target (or one with an empty expr)")
    if not all_panels:
        errors.append("no panels")
    return errors


def substitutions(d):
    subs = dict(BUILTINS)
    for v in (d.get("templating") or {}).get("list") or []:
        name, kind = v.get("name"), v.get("type")
        if kind == "datasource":
            continue
        if kind == "constant":
            subs[name] = str(v.get("query"))
        elif v.get("includeAll"):
            subs[name] = v.get("allValue") or ".*"
        else:
            cur = (v.get("current") or {}).get("value")
            subs[name] = cur[0] if isinstance(cur, list) else str(cur)
    return subs


def substitute(expr, subs):
    def repl(m):
        name = m.group(1) or m.group(2) or m.group(3)
        return subs.get(name, m.group(0))
    out = re.sub(r"\$\{(\w+)(?::\w+)?\}|\[\[(\w+)\]\]|\$(\w+)", repl, expr)
    left = re.findall(r"\$\{?\w+|\[\[\w+\]\]", out)
    return out, left


def metric_names(expr):
    e = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    e = re.sub(r"\{[^}]*\}", "", e)
    e = re.sub(r"\[[^\]]*\]", "", e)
    # Label lists go, so that `sum by (x) (...)` reads as the call `sum (...)`.
    e = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", e)
    names = set()
    for m in re.finditer(r"(?<![\w.:])([a-zA-Z_:][\w:]*)(?![\w:])(?!\s*\()", e):
        if m.group(1).lower() not in KEYWORDS:
            names.add(m.group(1))
    return names


class Prom:
    def __init__(self, url):
        self.url = url.rstrip("/")

    def get(self, path, **params):
        q = urllib.parse.urlencode(params, doseq=True)
        try:
            with urllib.request.urlopen(f"{self.url}{path}?{q}", timeout=10) as r:
                return json.load(r)
        except urllib.error.HTTPError as e:
            try:
                return json.load(e)
            except ValueError:
                return {"status": "error", "error": f"HTTP {e.code}"}

    def recording_rules(self):
        out = set()
        for g in self.get("/api/v1/rules", type="record").get("data", {}).get("groups", []):
            out.update(r["name"] for r in g.get("rules", []))
        return out

    def has_series(self, name):
        res = self.get("/api/v1/series", **{"match[]": f'{{__name__="{name}"}}', "start": time.time() - 3600})
        return res.get("status") == "success" and bool(res.get("data"))


def check_panel(prom, rules, subs, p):
    """-> (problems, series count)."""
    problems, total = [], 0
    for t in p.get("targets") or []:
        ref = t.get("refId", "?")
        expr, left = substitute(t.get("expr") or "", subs)
        if left:
            problems.append(f"target {ref}: unknown template variable(s) {sorted(set(left))}")
            continue
        res = prom.get("/api/v1/query", query=expr)
        if res.get("status") != "success":
            problems.append(f"target {ref}: query failed: {res.get('errorType', '')} {res.get('error', '')}\n  {expr}")
            continue
        n = len(res["data"]["result"]) if res["data"]["resultType"] in ("vector", "matrix") else 1
        total += n
        if n == 0:
            problems.append(f"target {ref}: no series\n  {expr}")
        names = metric_names(expr)
        if not names:
            problems.append(f"target {ref}: names no metric at all (a constant is not a panel)\n  {expr}")
        missing = sorted(x for x in names if x not in rules and not prom.has_series(x))
        if missing:
            problems.append(f"target {ref}: names no scraped series and no loaded recording rule: {', '.join(missing)}")
    return problems, total


def check_variables(prom, d):
    problems = []
    for v in (d.get("templating") or {}).get("list") or []:
        if v.get("type") != "query":
            continue
        q = v.get("query")
        q = q.get("query") if isinstance(q, dict) else q
        m = re.fullmatch(r"\s*label_values\(\s*(.+?)\s*,\s*(\w+)\s*\)\s*", q or "")
        if not m:
            problems.append(f"variable ${v.get('name')}: only label_values(series, label) queries are checked, got {q!r}")
            continue
        res = prom.get(f"/api/v1/label/{m.group(2)}/values", **{"match[]": m.group(1)})
        if res.get("status") != "success" or not res.get("data"):
            problems.append(f"variable ${v.get('name')}: {q} returns no values")
    return problems


def main():
    mode, args = sys.argv[1], sys.argv[2:]
    if mode == "lint":
        bad = 0
        for path in args:
            errors = lint(path)
            n = sum(1 for _ in panels(json.loads(Path(path).read_text()).get("panels") or [])) if not any(
                e.startswith("not valid JSON") for e in errors) else 0
            for e in errors:
                print(f"{path}: {e}")
            print(f"{path}: {n} panels, {len(errors)} problems")
            bad += bool(errors)
        return 1 if bad else 0

    # query PROM_URL WAIT_SECONDS COUNTS_FILE DASHBOARD...
    prom, wait, counts, files = Prom(args[0]), float(args[1]), args[2], args[3:]
    boards = [(f, json.loads(Path(f).read_text())) for f in files]
    deadline = time.monotonic() + wait
    while True:  # data arrives with the next scrapes and rule evaluations: wait for it, up to WAIT
        rules = prom.recording_rules()
        results = []
        for f, d in boards:
            subs = substitutions(d)
            for p in panels(d.get("panels") or []):
                results.append((f, p, *check_panel(prom, rules, subs, p)))
            results.append((f, None, check_variables(prom, d), 0))
        if all(not r[2] for r in results) or time.monotonic() >= deadline:
            break
        time.sleep(1)
    passed = failed = 0
    for f, p, problems, n in results:
        if p is None:
            if not problems:
                continue
            name = f"{Path(f).name} template variables"
        else:
            k = len(p.get("targets") or [])
            name = f"{Path(f).name} > {p.get('title')} ({k} target{'s' if k != 1 else ''}, {n} series)"
        if problems:
            failed += 1
            print(f"  FAIL  {name}")
            for line in "\n".join(problems).splitlines():
                print(f"        {line}")
        else:
            passed += 1
            print(f"  ok    {name}")
    Path(counts).write_text(f"{passed} {failed}\n")
    return 1 if failed else 0


sys.exit(main())
PYEOF

# ---------------------------------------------------------------- 1. static checks
for f in "${DASHBOARDS[@]}"; do
  check "lint $f ($(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(d.get("uid"))' "$f" 2>/dev/null || echo '?'))" \
    python3 "$work/check.py" lint "$f"
done
expect_fail "dashboard with a hard-coded datasource UID (hardcoded-datasource.json)" "hard-coded datasource uid" \
  python3 "$work/check.py" lint "$FIX/hardcoded-datasource.json"
check "lint the self-check fixtures missing-series.json, fallback-hides-typo.json (they must fail on data, not on form)" \
  python3 "$work/check.py" lint "$FIX/missing-series.json" "$FIX/fallback-hides-typo.json"
dangling_only() { # fails like check_runbooks.py, but "passes" (so expect_fail reports it) unless that is its only problem
  local out rc=0
  out="$("$PY" runbooks/check_runbooks.py "$FIX/runbooks-dangling-panel" 2>&1)" || rc=$?
  printf '%s\n' "$out"
  if ! grep -q ' 1 problems$' <<<"$out"; then
    echo "the fixture must have exactly one problem, the dangling panel link"
    return 0
  fi
  return "$rc"
}
expect_fail "runbook page linking a dashboard panel that does not exist (runbooks-dangling-panel/)" \
  'pages/demo.md: links to a missing panel "Demo panel that was renamed" in dashboards/demo.json' dangling_only

fixtures_used() { # every fixture is asserted by this script
  local f base unused=0
  for f in "$FIX"/*; do
    base="$(basename "$f")"
    [[ "$base" == README.md ]] && continue
    if ! grep -q -- "$base" "${BASH_SOURCE[0]}"; then
      echo "fixture $base is not used by dashboards.sh"
      unused=1
    fi
  done
  return "$unused"
}
check "every fixture in tests/policy/fixtures/dashboards is asserted" fixtures_used

# ---------------------------------------------------------------- 2. the platform and the operator's metrics
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_http() { # wait_http URL PID SECONDS
  local i
  for ((i = 0; i < $3 * 5; i++)); do
    curl -fs -o /dev/null "$1" 2>/dev/null && return 0
    kill -0 "$2" 2>/dev/null || return 1
    sleep 0.2
  done
  return 1
}

export XDG_STATE_HOME="$work/state"
port="$(free_port)"
base="http://127.0.0.1:$port"
# Its own throwaway PostgreSQL (DATABASE_URL unset even when tests/run exported one), the sweeper
# and fleet gauges every second instead of every 10 s.
env -u DATABASE_URL -u DATABASE_SECRET_ARN STREAMS_SWEEP_INTERVAL_SECS=1 RUST_LOG=warn \
  "$meridian" serve --port "$port" >"$work/serve.log" 2>&1 &
pids+=($!)
serve_pid=$!

mkdir -p "$work/operator"
cp "$OPERATOR_METRICS" "$work/operator/metrics"
op_port="$(free_port)"
python3 -m http.server --bind 127.0.0.1 --directory "$work/operator" "$op_port" >"$work/http.log" 2>&1 &
pids+=($!)
wait_http "http://127.0.0.1:$op_port/metrics" "$!" 10 ||
  fatal "serve the operator fixture with python3 -m http.server" "$(cat "$work/http.log")"

# ---------------------------------------------------------------- 3. Prometheus with the runbook rules
mkdir -p "$work/rules" "$work/tsdb"
for f in runbooks/rules/*.rules.yml; do
  sed -E 's/^([[:space:]]+interval:[[:space:]]*).*/\11s/' "$f" >"$work/rules/$(basename "$f")"
done
prom_port="$(free_port)"
cat >"$work/prometheus.yml" <<EOF
global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
rule_files:
  - $work/rules/*.rules.yml
scrape_configs:
  - job_name: meridian
    static_configs:
      - targets: ["127.0.0.1:$port"]
  - job_name: meridian-operator
    static_configs:
      - targets: ["127.0.0.1:$op_port"]
EOF
if ! out="$(promtool check config "$work/prometheus.yml" 2>&1)"; then
  fatal "promtool check config (generated config + runbooks/rules)" "$out"
fi
rule_files=("$work"/rules/*.rules.yml)
ok "promtool check config (generated config, ${#rule_files[@]} rule files from runbooks/rules)"
prometheus --config.file="$work/prometheus.yml" --storage.tsdb.path="$work/tsdb" \
  --web.listen-address="127.0.0.1:$prom_port" --log.level=warn >"$work/prometheus.log" 2>&1 &
pids+=($!)
prom="http://127.0.0.1:$prom_port"
wait_http "$prom/-/ready" "$!" 30 || fatal "Prometheus starts" "$(tail -n 30 "$work/prometheus.log")"

wait_http "$base/readyz" "$serve_pid" 90 || fatal "meridian serve becomes ready" "$(tail -n 30 "$work/serve.log")"
ok "meridian serve ready on $base after $((SECONDS - started))s (throwaway PostgreSQL)"

# ---------------------------------------------------------------- 4. load
load() {
  local alice bob ops oak data codes="" sid body pbx sign i att pl share
  alice="$("$meridian" token --sub alice)"
  oak="$("$meridian" token --sub oak-staff --scope attendance:site-oak-primary --scope attendance:read)"
  bob="$("$meridian" token --sub bob)"
  data="$("$meridian" token --sub data-team --scope playlists:analytics)"
  ops="$("$meridian" token --sub ops --scope streams:admin --scope calls:admin --ttl 15m)"
  c() { codes+="$(curl -s -o "$work/body" -w '%{http_code}' "$@") "; }
  json=(-H 'content-type: application/json')
  for i in 1 2; do
    c "$base/streams/v1/users/alice/sessions"                                            # 401 no token
    c "$base/streams/v1/users/bob/sessions" -H "authorization: Bearer $alice"            # 403 not hers
    c -X POST "$base/streams/v1/users/alice/sessions" -H "authorization: Bearer $alice" "${json[@]}" \
      -H "Idempotency-Key: tv-$i" -d '{"device_id":"tv","content_id":"movie-1"}'          # 201
    sid="$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["session_id"])' "$work/body" 2>/dev/null || true)"
    c -X POST "$base/streams/v1/users/alice/sessions" -H "authorization: Bearer $alice" "${json[@]}" \
      -H "Idempotency-Key: tv-$i" -d '{"device_id":"tv","content_id":"movie-1"}'          # 200 replay
    c -X POST "$base/streams/v1/users/alice/sessions" -H "authorization: Bearer $alice" "${json[@]}" \
      -d '{"device_id":"phone","content_id":"movie-1"}'                                  # 201
    c -X POST "$base/streams/v1/users/alice/sessions" -H "authorization: Bearer $alice" "${json[@]}" \
      -d '{"device_id":"laptop","content_id":"movie-1"}'                                 # 201
    c -X POST "$base/streams/v1/users/alice/sessions" -H "authorization: Bearer $alice" "${json[@]}" \
      -d '{"device_id":"tablet","content_id":"movie-1"}'                                 # 409 limit
    c -X POST "$base/streams/v1/users/alice/sessions" -H "authorization: Bearer $alice" "${json[@]}" \
      -d '{"device_id":"tv"}'                                                            # 400
    c "$base/streams/v1/users/alice/sessions" -H "authorization: Bearer $alice"          # 200 list
    c -X POST "$base/streams/v1/sessions/$sid/heartbeat" -H "authorization: Bearer $alice" # 200
    c -X DELETE "$base/streams/v1/sessions/$sid" -H "authorization: Bearer $alice"       # 204 stop
    c -X PUT "$base/streams/v1/users/bob/limit" -H "authorization: Bearer $bob" "${json[@]}" \
      -d '{"max_streams":4}'                                                             # 403
    c -X PUT "$base/streams/v1/users/bob/limit" -H "authorization: Bearer $ops" "${json[@]}" \
      -d '{"max_streams":4}'                                                             # 200
    body="{\"request_id\":\"r$i\",\"call_id\":\"c$i\",\"call_type\":\"pbx\",\"direction\":\"inbound\",\"from\":\"+46700000001\",\"to\":\"+46101110099\",\"event\":\"call_started\"}"
    sign="$("$meridian" sign-decision "$body")"
    c -X POST "$base/calls/v1/decisions" "${json[@]}" -H "$sign" -d "$body"              # 200 signed
    c -X POST "$base/calls/v1/decisions" "${json[@]}" -d "$body"                         # 401 unsigned
    c "$base/calls/v1/snapshot" -H "authorization: Bearer $ops"                          # 200
    c "$base/calls/v1/pbx/+46101110099" -H "authorization: Bearer $ops"                  # 200
    pbx="$(cat "$work/body")"
    # The same configuration written back: a routing change, the snapshot version moves.
    c -X PUT "$base/calls/v1/pbx/+46101110099" -H "authorization: Bearer $ops" "${json[@]}" -d "$pbx" # 200
    # learning: an item of the bundled real exams, an unknown one, another learner's profile.
    c "$base/learning/v1/items/aqaGCSEBio_1_1_1_EBc0BgD11T" -H "authorization: Bearer $alice"   # 200
    c "$base/learning/v1/items/no-such-item" -H "authorization: Bearer $alice"                  # 404
    c "$base/learning/v1/users/05IsdAyoSnekvovtyr2fC5cNOnF3" -H "authorization: Bearer $alice"  # 403
    # attendance: the visits page, a sign-in, its sign-out and delete at a sample site, a ticket,
    # another site (403).
    c "$base/attendance/v1/visits?limit=20" -H "authorization: Bearer $oak"                   # 200
    c -X POST "$base/attendance/v1/sites/oak-primary/attendance" -H "authorization: Bearer $oak" "${json[@]}" \
      -H "Idempotency-Key: dash-$i-$RANDOM" -d '{"entity_id":"dash-child","source":"kiosk"}'  # 201
    att="$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["id"])' "$work/body" 2>/dev/null || true)"
    c -X POST "$base/attendance/v1/sites/oak-primary/attendance/$att/sign-out" -H "authorization: Bearer $oak" \
      "${json[@]}" -d '{}'                                                                # 200
    c -X DELETE "$base/attendance/v1/sites/oak-primary/attendance/$att" -H "authorization: Bearer $oak" # 204
    c -X POST "$base/attendance/v1/sites/oak-primary/stream-tickets" -H "authorization: Bearer $oak" # 201
    c "$base/attendance/v1/sites/elm-nursery/attendance" -H "authorization: Bearer $oak"       # 403
    # playlists: a playlist created (idempotently), a lesson added, a stale reorder (412), what
    # next, a share link opened, revoked and opened again (404), the playlist deleted, the
    # removal analytics, another learner (403).
    c -X POST "$base/playlists/v1/users/alice/playlists" -H "authorization: Bearer $alice" "${json[@]}" \
      -H "Idempotency-Key: dash-$i-$RANDOM" -d '{"name":"dashboard"}'                     # 201
    pl="$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["id"])' "$work/body" 2>/dev/null || true)"
    c -X POST "$base/playlists/v1/users/alice/playlists/$pl/lessons" -H "authorization: Bearer $alice" \
      "${json[@]}" -d '{"lesson_id":"drums-funk-1"}'                                       # 201
    c -X PUT "$base/playlists/v1/users/alice/playlists/$pl/lessons/drums-funk-1/position" \
      -H "authorization: Bearer $alice" -H 'If-Match: "1"' "${json[@]}" -d '{"position":0}' # 412
    c "$base/playlists/v1/users/alice/playlists/$pl/next" -H "authorization: Bearer $alice"  # 200
    c -X POST "$base/playlists/v1/users/alice/playlists/$pl/shares" -H "authorization: Bearer $alice" \
      "${json[@]}" -d '{"channel":"whatsapp"}'                                             # 201
    share="$(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(d["id"], d["token"])' "$work/body" 2>/dev/null || true)"
    c "$base/playlists/v1/shared/${share#* }"                                               # 200
    c -X DELETE "$base/playlists/v1/users/alice/playlists/$pl/shares/${share%% *}" -H "authorization: Bearer $alice" # 204
    c "$base/playlists/v1/shared/${share#* }"                                               # 404
    c -X DELETE "$base/playlists/v1/users/alice/playlists/$pl" -H "authorization: Bearer $alice" # 204
    c "$base/playlists/v1/analytics/removals" -H "authorization: Bearer $data"               # 200
    c "$base/playlists/v1/users/alice/playlists" -H "authorization: Bearer $bob"              # 403
    # Stop the other two streams so the next round starts from zero again.
    c "$base/streams/v1/users/alice/sessions" -H "authorization: Bearer $alice"
    for sid in $(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); [print(s["session_id"]) for s in d["items"]]' "$work/body" 2>/dev/null); do
      c -X DELETE "$base/streams/v1/sessions/$sid" -H "authorization: Bearer $alice"
    done
    sleep 1
  done
  echo "status codes: $codes"
  want="401 403 201 200 201 201 409 400 200 200 204 403 200 200 401 200 200 200 200 404 403 200 201 200 204 201 403 201 201 412 200 201 200 204 404 204 200 403 200 204 204 "
  [[ "$codes" == "$want$want" ]] || { echo "expected:     $want$want"; return 1; }
}
check "load: stream starts/stops incl. a replay and a 409, 400/401/403s, calls decisions, a routing change, learning reads, attendance sign-ins, playlist commands and shares" load

# ---------------------------------------------------------------- 5. every panel against Prometheus
check "Prometheus scrapes meridian serve and the operator fixture (up == 1 for both jobs)" \
  python3 - "$prom" <<'PYEOF'
import json, sys, time, urllib.parse, urllib.request
prom = sys.argv[1]
deadline = time.monotonic() + 15
while True:
    q = urllib.parse.urlencode({"query": "up"})
    res = json.load(urllib.request.urlopen(f"{prom}/api/v1/query?{q}"))["data"]["result"]
    up = {r["metric"]["job"]: r["value"][1] for r in res}
    if up.get("meridian") == "1" and up.get("meridian-operator") == "1" or time.monotonic() > deadline:
        break
    time.sleep(0.5)
print(up)
sys.exit(0 if up.get("meridian") == "1" and up.get("meridian-operator") == "1" else 1)
PYEOF

panels_out="$work/panels.out"
set +e
python3 "$work/check.py" query "$prom" 45 "$work/counts" "${DASHBOARDS[@]}" >"$panels_out" 2>&1
set -e
cat "$panels_out"
if [[ -s "$work/counts" ]]; then
  read -r p f <"$work/counts"
  passed=$((passed + p))
  failed=$((failed + f))
  ((f == 0)) || failures+=("$f panel(s): see the FAIL lines above")
else
  not_ok "panel checker ran" "$(cat "$panels_out")"
fi

rules_healthy() { # every rule of runbooks/rules loaded and evaluated without error
  python3 - "$prom" "$work/rules" <<'PYEOF'
import json, pathlib, re, sys, urllib.request
prom, rules_dir = sys.argv[1], pathlib.Path(sys.argv[2])
want = sum(len(re.findall(r"^\s*- (?:alert|record):", p.read_text(), re.M)) for p in rules_dir.glob("*.yml"))
groups = json.load(urllib.request.urlopen(f"{prom}/api/v1/rules"))["data"]["groups"]
rules = [r for g in groups for r in g["rules"]]
bad = [f"{r['name']}: {r['health']} {r.get('lastError', '')}" for r in rules if r["health"] != "ok"]
print(f"{len(groups)} groups, {len(rules)} rules loaded (files hold {want}); {len(bad)} unhealthy")
print("\n".join(bad))
sys.exit(0 if len(rules) == want and not bad else 1)
PYEOF
}
check "runbooks/rules loaded and every rule evaluates without error" rules_healthy

# ---------------------------------------------------------------- 6. self-check: a series nobody exports
expect_fail "a panel querying a series that does not exist (missing-series.json)" \
  'target A: no series' python3 "$work/check.py" query "$prom" 0 "$work/fixture-counts" "$FIX/missing-series.json"
expect_fail "a misspelt series behind \`or vector(0)\` (fallback-hides-typo.json)" \
  'names no scraped series and no loaded recording rule: http_request_total$' \
  python3 "$work/check.py" query "$prom" 0 "$work/fixture-counts" "$FIX/fallback-hides-typo.json"

finish
