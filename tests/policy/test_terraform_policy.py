#!/usr/bin/env python3
"""Terraform policy test: what checkov cannot see.

checkov checks resources, but in this repo the values that matter (deletion protection,
backup days, instance counts, public endpoints) are passed from terraform/countries/<cc>
through modules/stack into the resource modules, often by way of the provider-free plan
module. This test parses every .tf file with python-hcl2 and follows each country root's
inputs down every level of module calls (root -> stack -> aurora, eks, ...):

  resource attribute -> var.x -> the module call's argument (or the variable default)
  -> the caller's local.y / var.z / module.<other>.output, and so on up to the root,
     whose variables come from its terraform.tfvars (or their defaults)
  -> module.plan.* wherever plan is called (evaluated for real by running the
     provider-free plan module offline with the arguments that call resolves to)

Rules, for every country root:
  AURORA_MISSING             the country has no aws_rds_cluster at all
  AURORA_DELETION_PROTECTION aws_rds_cluster.deletion_protection is not provably true
  AURORA_BACKUP_RETENTION    backup_retention_period is not provably >= 7
  AURORA_ENCRYPTION          storage_encrypted not provably true, or kms_key_id not a CMK
  AURORA_MULTI_AZ            fewer than 3 instances or fewer than 3 distinct AZs (a writer and
                             two readers, one per AZ: after the writer's AZ is lost and a
                             reader is promoted, the new writer still has a reader)
  EKS_PUBLIC_ENDPOINT        an aws_eks_cluster's endpoint_public_access is not provably
                             false (or endpoint_private_access not provably true)
  SECRET_VARIABLE            a variable anywhere in the country's module tree (or a key of its
                             terraform.tfvars) is named like a secret value (..._password,
                             ..._token_key, ..._secret(s), ...) or is declared sensitive and
                             given a value: secrets
                             are generated into Secrets Manager and passed by ARN, never as
                             plaintext inputs (which would sit in tfvars, plan and state)

Anything the evaluator cannot resolve fails closed ("cannot prove").

Every rule is also run against failing fixtures (tests/policy/fixtures/policy/<case>/,
each with an EXPECT file naming the rules that must fire, and only those): if a bad
fixture passes, this test fails.

Usage: python tests/policy/test_terraform_policy.py [--repo DIR]
Needs python-hcl2 (pinned in tests/policy/requirements.txt) and terraform on PATH.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import hcl2
from hcl2.utils import SerializationOptions

RULES = (
    "AURORA_MISSING",
    "AURORA_DELETION_PROTECTION",
    "AURORA_BACKUP_RETENTION",
    "AURORA_ENCRYPTION",
    "AURORA_MULTI_AZ",
    "EKS_PUBLIC_ENDPOINT",
    "SECRET_VARIABLE",
)

# A variable named like this carries a secret value itself. Names that merely mention one
# (..._secret_arn, password_version, calls_token_key_also_accept) end differently.
SECRET_NAME = re.compile(
    r"(^|_)(password|passwd|passphrase|secret|secrets|token|token_key|signing_key|private_key|api_key|access_key|credentials?)$",
    re.IGNORECASE,
)

# ----------------------------------------------------------------------------- values


class Unknown:
    """A value the evaluator cannot prove. Carries the reason."""

    def __init__(self, why: str):
        self.why = why

    def __repr__(self) -> str:
        return f"<unknown: {self.why}>"


@dataclass(frozen=True)
class Ref:
    """An opaque reference to a managed resource attribute, e.g. aws_kms_key.this.arn."""

    path: str

    def __repr__(self) -> str:
        return f"<ref {self.path}>"


def is_unknown(v: Any) -> bool:
    return isinstance(v, Unknown)


# ----------------------------------------------------------------------------- HCL loading

_OPTS = SerializationOptions(strip_string_quotes=True, with_comments=False, explicit_blocks=True)


def _unquote(key: str) -> str:
    if len(key) >= 2 and key[0] == '"' and key[-1] == '"':
        return key[1:-1]
    return key


def _clean(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {_unquote(k): _clean(v) for k, v in obj.items() if k != "__is_block__"}
    if isinstance(obj, list):
        return [_clean(v) for v in obj]
    return obj


def load_dir(path: Path) -> dict[str, Any]:
    """Merge every *.tf file of one module directory into {kind: {...}}."""
    out: dict[str, Any] = {
        "variable": {},
        "locals": {},
        "module": {},
        "output": {},
        "resource": {},
    }
    files = sorted(path.glob("*.tf"))
    if not files:
        raise FileNotFoundError(f"no .tf files in {path}")
    for f in files:
        with f.open(encoding="utf-8") as fh:
            try:
                doc = _clean(hcl2.load(fh, serialization_options=_OPTS))
            except Exception as exc:  # noqa: BLE001 - report any parser failure clearly
                raise SystemExit(f"python-hcl2 failed to parse {f}: {exc}") from exc
        for block in doc.get("variable", []):
            out["variable"].update(block)
        for block in doc.get("locals", []):
            out["locals"].update(block)
        for block in doc.get("module", []):
            out["module"].update(block)
        for block in doc.get("output", []):
            out["output"].update(block)
        for block in doc.get("resource", []):
            for rtype, named in block.items():
                for rname, body in named.items():
                    out["resource"][f"{rtype}.{rname}"] = body
    tfvars = path / "terraform.tfvars"
    out["tfvars"] = {}
    if tfvars.exists():
        with tfvars.open(encoding="utf-8") as fh:
            out["tfvars"] = _clean(hcl2.load(fh, serialization_options=_OPTS))
    return out


# ----------------------------------------------------------------------------- expression parser
# A small subset of HCL expressions: literals, references with .attr and [index], function
# calls, unary ! and -, * / %, + -, comparisons, == !=, && ||, and the ternary operator.

_TOKEN = re.compile(
    r"""\s*(?:
        (?P<num>\d+(?:\.\d+)?)
      | (?P<str>"(?:[^"\\]|\\.)*")
      | (?P<op>==|!=|<=|>=|&&|\|\||[?:!<>+\-*/%(),.\[\]{}=])
      | (?P<ident>[A-Za-z_][A-Za-z0-9_-]*)
    )""",
    re.VERBOSE,
)


def tokenize(src: str) -> list[tuple[str, str]]:
    toks: list[tuple[str, str]] = []
    pos = 0
    src = src.strip()
    while pos < len(src):
        m = _TOKEN.match(src, pos)
        if not m or m.end() == pos:
            raise ValueError(f"cannot tokenize {src[pos:]!r}")
        pos = m.end()
        kind = m.lastgroup
        assert kind is not None
        toks.append((kind, m.group(kind)))
    return toks


class Parser:
    def __init__(self, src: str):
        self.toks = tokenize(src)
        self.i = 0

    def peek(self, value: str | None = None) -> bool:
        if self.i >= len(self.toks):
            return False
        return value is None or self.toks[self.i][1] == value

    def take(self, value: str | None = None) -> tuple[str, str]:
        if self.i >= len(self.toks):
            raise ValueError("unexpected end of expression")
        tok = self.toks[self.i]
        if value is not None and tok[1] != value:
            raise ValueError(f"expected {value!r}, got {tok[1]!r}")
        self.i += 1
        return tok

    def parse(self) -> Any:
        node = self.ternary()
        if self.i != len(self.toks):
            raise ValueError(f"trailing tokens: {self.toks[self.i:]}")
        return node

    def ternary(self) -> Any:
        cond = self.binary(0)
        if self.peek("?"):
            self.take("?")
            a = self.ternary()
            self.take(":")
            b = self.ternary()
            return ("?", cond, a, b)
        return cond

    LEVELS = [["||"], ["&&"], ["==", "!="], ["<", ">", "<=", ">="], ["+", "-"], ["*", "/", "%"]]

    def binary(self, level: int) -> Any:
        if level == len(self.LEVELS):
            return self.unary()
        node = self.binary(level + 1)
        while self.i < len(self.toks) and self.toks[self.i][0] == "op" and self.toks[self.i][1] in self.LEVELS[level]:
            op = self.take()[1]
            node = ("bin", op, node, self.binary(level + 1))
        return node

    def unary(self) -> Any:
        if self.peek("!"):
            self.take()
            return ("not", self.unary())
        if self.peek("-"):
            self.take()
            return ("neg", self.unary())
        return self.postfix()

    def postfix(self) -> Any:
        node = self.primary()
        while True:
            if self.peek("."):
                self.take()
                kind, name = self.take()
                node = ("attr", node, name if kind == "ident" else int(name))
            elif self.peek("["):
                self.take()
                idx = self.ternary()
                self.take("]")
                node = ("index", node, idx)
            else:
                return node

    def primary(self) -> Any:
        kind, val = self.take()
        if kind == "num":
            return ("lit", float(val) if "." in val else int(val))
        if kind == "str":
            inner = json.loads(val)
            return ("lit", inner) if "${" not in inner else ("opaque", val)
        if kind == "op" and val == "(":
            node = self.ternary()
            self.take(")")
            return node
        if kind == "op" and val == "[":
            items = []
            while not self.peek("]"):
                items.append(self.ternary())
                if self.peek(","):
                    self.take()
            self.take("]")
            return ("list", items)
        if kind == "ident":
            if val in ("true", "false"):
                return ("lit", val == "true")
            if val == "null":
                return ("lit", None)
            if self.peek("("):
                self.take("(")
                args = []
                while not self.peek(")"):
                    args.append(self.ternary())
                    if self.peek(","):
                        self.take()
                self.take(")")
                return ("call", val, args)
            return ("name", val)
        raise ValueError(f"unexpected token {val!r}")


# ----------------------------------------------------------------------------- evaluation


@dataclass
class Ctx:
    """One module instance: its directory, parsed files, call arguments and caller."""

    repo: Path
    path: Path
    doc: dict[str, Any]
    args: dict[str, Any] = field(default_factory=dict)
    caller: "Ctx | None" = None
    plan_outputs: dict[str, Any] = field(default_factory=dict)  # plan call label -> outputs
    label: str = "root"
    is_root: bool = False
    depth: int = 0

    def child(self, name: str) -> "Ctx":
        call = self.doc["module"].get(name)
        if call is None:
            raise KeyError(name)
        src = call.get("source")
        if not isinstance(src, str) or not src.startswith("."):
            raise ValueError(f"module {name}: only local sources are followed, got {src!r}")
        path = (self.path / src).resolve()
        args = {k: v for k, v in call.items() if k not in ("source", "count", "for_each", "depends_on", "providers", "version")}
        return Ctx(self.repo, path, load_cached(path), args, self, self.plan_outputs, f"{self.label}.module.{name}", depth=self.depth + 1)


_CACHE: dict[Path, dict[str, Any]] = {}


def load_cached(path: Path) -> dict[str, Any]:
    if path not in _CACHE:
        _CACHE[path] = load_dir(path)
    return _CACHE[path]


def value_of(raw: Any, ctx: Ctx, seen: frozenset = frozenset()) -> Any:
    """Evaluate a python-hcl2 value (literal, list, dict or "${expr}" string) in ctx."""
    if isinstance(raw, list):
        return [value_of(v, ctx, seen) for v in raw]
    if isinstance(raw, dict):
        return {k: value_of(v, ctx, seen) for k, v in raw.items()}
    if isinstance(raw, str):
        s = raw.strip()
        if s.startswith("${") and s.endswith("}") and s.count("${") == 1:
            try:
                node = Parser(s[2:-1]).parse()
            except ValueError as exc:
                return Unknown(f"unparsed expression {s!r}: {exc}")
            return evaluate(node, ctx, seen)
        if "${" in s:
            return Unknown(f"template string {s!r}")
        return raw
    return raw


def _get(obj: Any, key: Any, what: str) -> Any:
    if is_unknown(obj):
        return obj
    if isinstance(obj, Ref):
        return Ref(f"{obj.path}.{key}")
    try:
        if isinstance(obj, list):
            return obj[int(key)]
        if isinstance(obj, dict):
            return obj[key]
    except (KeyError, IndexError, ValueError, TypeError):
        return Unknown(f"{what}: no {key!r}")
    return Unknown(f"{what}: cannot index {type(obj).__name__} with {key!r}")


def resolve_var(name: str, ctx: Ctx, seen: frozenset) -> Any:
    key = ("var", str(ctx.path), ctx.label, name)
    if key in seen:
        return Unknown(f"cycle at var.{name}")
    seen = seen | {key}
    if ctx.is_root:
        if name in ctx.doc["tfvars"]:
            return value_of(ctx.doc["tfvars"][name], ctx, seen)
    elif name in ctx.args:
        assert ctx.caller is not None
        return value_of(ctx.args[name], ctx.caller, seen)
    decl = ctx.doc["variable"].get(name)
    if decl is None:
        return Unknown(f"{ctx.label}: undeclared var.{name}")
    if "default" not in decl:
        return Unknown(f"{ctx.label}: var.{name} has no value and no default")
    return value_of(decl["default"], ctx, seen)


def resolve_module_output(name: str, output: str, ctx: Ctx, seen: frozenset) -> Any:
    if f"{ctx.label}.module.{name}" in ctx.plan_outputs:
        outputs = ctx.plan_outputs[f"{ctx.label}.module.{name}"]
        if output not in outputs:
            return Unknown(f"module.{name} has no output {output!r}")
        return outputs[output]
    try:
        child = ctx.child(name)
    except (KeyError, ValueError) as exc:
        return Unknown(f"{ctx.label}: module.{name}: {exc}")
    decl = child.doc["output"].get(output)
    if decl is None:
        return Unknown(f"{child.label}: no output {output!r}")
    return value_of(decl.get("value"), child, seen)


def evaluate(node: Any, ctx: Ctx, seen: frozenset) -> Any:  # noqa: C901 - a small interpreter
    kind = node[0]
    if kind == "lit":
        return node[1]
    if kind == "opaque":
        return Unknown(f"template {node[1]}")
    if kind == "list":
        return [evaluate(n, ctx, seen) for n in node[1]]
    if kind == "not":
        v = evaluate(node[1], ctx, seen)
        return (not v) if isinstance(v, bool) else Unknown(f"!{v!r}")
    if kind == "neg":
        v = evaluate(node[1], ctx, seen)
        return -v if isinstance(v, (int, float)) and not isinstance(v, bool) else Unknown(f"-{v!r}")
    if kind == "?":
        c = evaluate(node[1], ctx, seen)
        if not isinstance(c, bool):
            return Unknown(f"condition not provable: {c!r}")
        return evaluate(node[2] if c else node[3], ctx, seen)
    if kind == "bin":
        return binop(node[1], evaluate(node[2], ctx, seen), evaluate(node[3], ctx, seen))
    if kind == "call":
        args = [evaluate(a, ctx, seen) for a in node[2]]
        return call(node[1], args)
    if kind in ("attr", "index", "name"):
        return resolve_traversal(node, ctx, seen)
    return Unknown(f"unsupported node {kind}")


def flatten_traversal(node: Any) -> tuple[str, list[Any]] | None:
    """("attr", ("attr", ("name","var"), "x"), "y") -> ("var", [("k","x"), ("k","y")])."""
    steps: list[Any] = []
    while node[0] in ("attr", "index"):
        steps.append(("k", node[2]) if node[0] == "attr" else ("i", node[2]))
        node = node[1]
    if node[0] != "name":
        return None
    steps.reverse()
    return node[1], steps


def resolve_traversal(node: Any, ctx: Ctx, seen: frozenset) -> Any:
    flat = flatten_traversal(node)
    if flat is None:
        return Unknown("complex traversal")
    head, steps = flat

    def step_key(step: Any) -> Any:
        if step[0] == "k":
            return step[1]
        return evaluate(step[1], ctx, seen)

    if head == "var" and steps and steps[0][0] == "k":
        value = resolve_var(steps[0][1], ctx, seen)
        rest = steps[1:]
    elif head == "local" and steps and steps[0][0] == "k":
        name = steps[0][1]
        key = ("local", str(ctx.path), ctx.label, name)
        if key in seen:
            return Unknown(f"cycle at local.{name}")
        if name not in ctx.doc["locals"]:
            return Unknown(f"{ctx.label}: no local.{name}")
        value = value_of(ctx.doc["locals"][name], ctx, seen | {key})
        rest = steps[1:]
    elif head == "module" and steps and steps[0][0] == "k":
        name = steps[0][1]
        rest = steps[1:]
        if rest and rest[0][0] == "i":  # module.eks[0].x: instance index of a counted module
            rest = rest[1:]
        if not rest or rest[0][0] != "k":
            return Unknown(f"whole-module reference module.{name}")
        value = resolve_module_output(name, rest[0][1], ctx, seen)
        rest = rest[1:]
    elif head in ("count", "each", "path", "terraform", "data"):
        return Unknown(f"{head}.* is not static")
    else:
        # A managed resource attribute: opaque, but known to be that resource.
        parts = [head] + [str(s[1]) if s[0] == "k" else "[*]" for s in steps]
        return Ref(".".join(parts))
    for step in rest:
        value = _get(value, step_key(step), f"{head}.{steps[0][1]}")
    return value


def binop(op: str, a: Any, b: Any) -> Any:
    if op in ("==", "!="):
        if is_unknown(a) or is_unknown(b) or isinstance(a, Ref) or isinstance(b, Ref):
            # A resource reference is never null.
            if (isinstance(a, Ref) and b is None) or (isinstance(b, Ref) and a is None):
                return op == "!="
            return Unknown(f"{a!r} {op} {b!r}")
        return (a == b) if op == "==" else (a != b)
    if op in ("&&", "||"):
        if isinstance(a, bool) and isinstance(b, bool):
            return (a and b) if op == "&&" else (a or b)
        if op == "&&" and (a is False or b is False):
            return False
        if op == "||" and (a is True or b is True):
            return True
        return Unknown(f"{a!r} {op} {b!r}")
    nums = all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in (a, b))
    if not nums:
        return Unknown(f"{a!r} {op} {b!r}")
    if op == "+":
        return a + b
    if op == "-":
        return a - b
    if op == "*":
        return a * b
    if op == "/":
        return a / b if b else Unknown("division by zero")
    if op == "%":
        return a % b if b else Unknown("modulo by zero")
    return {"<": a < b, ">": a > b, "<=": a <= b, ">=": a >= b}[op]


def call(fn: str, args: list[Any]) -> Any:
    if any(is_unknown(a) for a in args):
        return Unknown(f"{fn}() of unknown")
    if fn == "length" and len(args) == 1 and isinstance(args[0], (list, dict, str)):
        return len(args[0])
    if fn == "distinct" and len(args) == 1 and isinstance(args[0], list):
        out: list[Any] = []
        for a in args[0]:
            if a not in out:
                out.append(a)
        return out
    if fn == "coalesce":
        for a in args:
            if a is not None and a != "":
                return a
        return Unknown("coalesce of nothing")
    if fn in ("max", "min") and args and all(isinstance(a, (int, float)) for a in args):
        return max(args) if fn == "max" else min(args)
    if fn == "tobool" and len(args) == 1 and isinstance(args[0], bool):
        return args[0]
    if fn == "tonumber" and len(args) == 1 and isinstance(args[0], (int, float)):
        return args[0]
    return Unknown(f"function {fn}() is not evaluated")


# ----------------------------------------------------------------------------- plan module outputs


def is_plan_source(caller: Path, src: Any) -> bool:
    """Is this local module source the plan module (../../modules/plan from a root, ../plan from the stack)?"""
    return isinstance(src, str) and (caller / src).resolve().parts[-2:] == ("modules", "plan")


def plan_calls(ctx: Ctx) -> dict[str, dict[str, Any]]:
    """Calls of the provider-free plan module at any depth under ctx (a root calls the stack,
    the stack calls plan), keyed by the call's label (countries/se.module.stack.module.plan),
    with their arguments evaluated through every caller up to the root."""
    calls = {}
    for name, call_ in ctx.doc["module"].items():
        src = call_.get("source", "")
        if not (isinstance(src, str) and src.startswith(".")):
            continue
        if not is_plan_source(ctx.path, src):
            if ctx.depth <= 10:
                calls.update(plan_calls(ctx.child(name)))
            continue
        path = (ctx.path / src).resolve()
        args = {}
        for k, v in call_.items():
            if k in ("source", "count", "for_each", "depends_on", "providers"):
                continue
            val = value_of(v, ctx)
            if is_unknown(val) or isinstance(val, Ref):
                raise SystemExit(f"{ctx.label} ({ctx.path}): module.{name}.{k} must be static for the policy test: {val!r}")
            args[k] = val
        calls[f"{ctx.label}.module.{name}"] = {"path": path, "args": args}
    return calls


def evaluate_plans(requests: list[tuple[Path, dict[str, Any]]], workdir: Path) -> list[dict[str, Any]]:
    """Run the provider-free plan module(s) for real (offline) and return their outputs."""
    if not requests:
        return []
    if shutil.which("terraform") is None:
        raise SystemExit("terraform is not on PATH (needed to evaluate the plan module)")
    workdir.mkdir(parents=True, exist_ok=True)
    lines = []
    for i, (path, args) in enumerate(requests):
        lines.append(f'module "p{i}" {{')
        lines.append(f"  source = {json.dumps(os.path.relpath(path, workdir))}")
        for k, v in args.items():
            lines.append(f"  {k} = {json.dumps(v)}")
        lines.append("}")
        lines.append(f'output "p{i}" {{\n  value = module.p{i}\n}}')
    (workdir / "main.tf").write_text("\n".join(lines) + "\n", encoding="utf-8")
    env = dict(os.environ, TF_CLI_CONFIG_FILE="/dev/null", TF_IN_AUTOMATION="1", TF_INPUT="0")
    for cmd in (
        ["terraform", "init", "-backend=false", "-input=false", "-no-color"],
        ["terraform", "apply", "-auto-approve", "-input=false", "-no-color", "-lock=false"],
    ):
        res = subprocess.run(cmd, cwd=workdir, env=env, capture_output=True, text=True, check=False)
        if res.returncode != 0:
            raise SystemExit(f"`{' '.join(cmd)}` failed in {workdir}:\n{res.stdout}\n{res.stderr}")
    res = subprocess.run(["terraform", "output", "-json", "-no-color"], cwd=workdir, env=env, capture_output=True, text=True, check=True)
    out = json.loads(res.stdout)
    return [out[f"p{i}"]["value"] for i in range(len(requests))]


# ----------------------------------------------------------------------------- rules


@dataclass
class Violation:
    rule: str
    where: str
    detail: str

    def __str__(self) -> str:
        return f"{self.rule}: {self.where}: {self.detail}"


def walk(ctx: Ctx):
    """Yield every module instance context of a root, depth first."""
    yield ctx
    if ctx.depth > 10:
        return
    for name, call_ in ctx.doc["module"].items():
        if f"{ctx.label}.module.{name}" in ctx.plan_outputs:
            continue
        src = call_.get("source")
        if isinstance(src, str) and src.startswith("."):
            yield from walk(ctx.child(name))


def attr(body: dict[str, Any], name: str, ctx: Ctx) -> Any:
    if name not in body:
        return Unknown(f"{name} not set")
    return value_of(body[name], ctx)


def block(body: dict[str, Any], name: str) -> dict[str, Any] | None:
    b = body.get(name)
    if isinstance(b, list) and len(b) == 1 and isinstance(b[0], dict):
        return b[0]
    return None


def is_cmk(v: Any) -> bool:
    if isinstance(v, Ref):
        return v.path.startswith("aws_kms_key.") and v.path.endswith(".arn")
    return isinstance(v, str) and bool(re.match(r"^arn:aws[a-z-]*:kms:[a-z0-9-]+:\d{12}:key/", v))


EVIDENCE: list[str] = []  # what was proven, printed under each passing country


def check_country(root: Ctx) -> list[Violation]:
    EVIDENCE.clear()
    out: list[Violation] = []
    clusters = 0
    for ctx in walk(root):
        for rid, body in ctx.doc["resource"].items():
            rtype = rid.split(".")[0]
            where = f"{ctx.label} {rid} ({ctx.path.relative_to(root.repo) if ctx.path.is_relative_to(root.repo) else ctx.path})"
            if rtype == "aws_rds_cluster":
                clusters += 1
                out += check_aurora(ctx, rid, body, where)
            elif rtype == "aws_eks_cluster":
                vpc = block(body, "vpc_config")
                if vpc is None:
                    out.append(Violation("EKS_PUBLIC_ENDPOINT", where, "no static vpc_config block (public endpoint is the AWS default)"))
                    continue
                pub = attr(vpc, "endpoint_public_access", ctx)
                if pub is not False:
                    out.append(Violation("EKS_PUBLIC_ENDPOINT", where, f"endpoint_public_access is {pub!r}, must be provably false"))
                priv = attr(vpc, "endpoint_private_access", ctx)
                if priv is not True:
                    out.append(Violation("EKS_PUBLIC_ENDPOINT", where, f"endpoint_private_access is {priv!r}, must be true"))
                EVIDENCE.append(f"{ctx.label} {rid}: endpoint_public_access={pub!r} endpoint_private_access={priv!r}")
    if clusters == 0:
        out.append(Violation("AURORA_MISSING", root.label, "no aws_rds_cluster found in the country stack"))
    out += check_secret_variables(root)
    return out


def check_secret_variables(root: Ctx) -> list[Violation]:
    out: list[Violation] = []
    seen: set[Path] = set()
    for ctx in walk(root):
        if ctx.path in seen:
            continue
        seen.add(ctx.path)
        where = ctx.path.relative_to(root.repo) if ctx.path.is_relative_to(root.repo) else ctx.path
        for name, decl in ctx.doc["variable"].items():
            if SECRET_NAME.search(name):
                out.append(Violation("SECRET_VARIABLE", f"{where} var.{name}", "named like a secret value: generate it into Secrets Manager and pass the ARN"))
            elif isinstance(decl, dict) and decl.get("sensitive") is True and (ctx.is_root or name in ctx.args):
                # Only when a value is passed: an unset sensitive input carries nothing.
                out.append(Violation("SECRET_VARIABLE", f"{where} var.{name}", "declared sensitive and given a value: a secret passed in plaintext"))
    for key in root.doc["tfvars"]:
        if SECRET_NAME.search(key):
            out.append(Violation("SECRET_VARIABLE", f"{root.label}/terraform.tfvars {key}", "a secret value in tfvars"))
    if not out:
        EVIDENCE.append(f"{root.label}: no variable in its {len(seen)} module directories carries a secret value")
    return out


def check_aurora(ctx: Ctx, rid: str, body: dict[str, Any], where: str) -> list[Violation]:
    out: list[Violation] = []
    dp = attr(body, "deletion_protection", ctx)
    if dp is not True:
        out.append(Violation("AURORA_DELETION_PROTECTION", where, f"deletion_protection is {dp!r}"))

    br = attr(body, "backup_retention_period", ctx)
    if not (isinstance(br, (int, float)) and not isinstance(br, bool) and br >= 7):
        out.append(Violation("AURORA_BACKUP_RETENTION", where, f"backup_retention_period is {br!r}, must be >= 7"))

    enc = attr(body, "storage_encrypted", ctx)
    kms = attr(body, "kms_key_id", ctx)
    if enc is not True:
        out.append(Violation("AURORA_ENCRYPTION", where, f"storage_encrypted is {enc!r}"))
    elif not is_cmk(kms):
        out.append(Violation("AURORA_ENCRYPTION", where, f"kms_key_id is {kms!r}, must be a customer-managed key"))

    # Instances of this cluster in the same module.
    cluster_name = rid.split(".", 1)[1]
    instances = 0
    azs: set[str] = set()
    unknown_az = []
    for iid, ibody in ctx.doc["resource"].items():
        if not iid.startswith("aws_rds_cluster_instance."):
            continue
        cid = ibody.get("cluster_identifier", "")
        if isinstance(cid, str) and f"aws_rds_cluster.{cluster_name}." not in cid:
            continue
        count = attr(ibody, "count", ctx) if "count" in ibody else 1
        if not isinstance(count, int) or isinstance(count, bool):
            out.append(Violation("AURORA_MULTI_AZ", where, f"{iid} count is {count!r}"))
            continue
        instances += count
        raw_az = ibody.get("availability_zone")
        if raw_az is None:
            unknown_az.append(f"{iid}: availability_zone not set")
            continue
        # Only the two spreading forms are understood: var.X[count.index] and
        # var.X[count.index % length(var.X)]; anything else must evaluate statically.
        m = re.fullmatch(r"\$\{var\.([A-Za-z0-9_]+)\[count\.index(?: % length\(var\.\1\))?\]\}", str(raw_az).strip())
        if m:
            lst = resolve_var(m.group(1), ctx, frozenset())
            if isinstance(lst, list) and all(isinstance(a, str) for a in lst):
                spread = lst[: max(count, 0)] if count <= len(lst) else lst
                azs.update(spread)
            else:
                unknown_az.append(f"{iid}: var.{m.group(1)} is {lst!r}")
        else:
            az = value_of(raw_az, ctx)
            if isinstance(az, str):
                azs.add(az)
            else:
                unknown_az.append(f"{iid}: availability_zone is {az!r}")
    if instances < 3:
        out.append(Violation("AURORA_MULTI_AZ", where, f"{instances} instance(s): needs a writer and two readers (one per AZ), so that a failover out of a lost AZ leaves two"))
    elif unknown_az:
        out.append(Violation("AURORA_MULTI_AZ", where, "; ".join(unknown_az)))
    elif len(azs) < 3:
        out.append(Violation("AURORA_MULTI_AZ", where, f"instances only in {sorted(azs)}"))
    EVIDENCE.append(
        f"{ctx.label} {rid}: deletion_protection={dp!r} backup_retention_period={br!r} "
        f"storage_encrypted={enc!r} kms_key_id={kms!r} instances={instances} azs={sorted(azs)}"
    )
    return out


# ----------------------------------------------------------------------------- driver


def country_roots(countries_dir: Path) -> list[Path]:
    # countries/_shared holds the canonical files every root links to (main.tf, variables.tf,
    # ...): it is not a root itself (no backend.tf, no local.country). Any directory whose
    # name starts with "_" or "." is skipped; a root's symlinked files are read through the link.
    return sorted(
        p for p in countries_dir.iterdir() if p.is_dir() and not p.name.startswith(("_", ".")) and any(p.glob("*.tf"))
    )


def check_tree(repo: Path, countries_dir: Path, workdir: Path) -> dict[str, list[Violation]]:
    roots = [Ctx(repo, p, load_cached(p), label=f"countries/{p.name}", is_root=True) for p in country_roots(countries_dir)]
    if not roots:
        raise SystemExit(f"no country roots under {countries_dir}")
    requests: list[tuple[Path, dict[str, Any]]] = []
    index: list[tuple[Ctx, str]] = []
    for root in roots:
        for label, pc in plan_calls(root).items():
            requests.append((pc["path"], pc["args"]))
            index.append((root, label))
    for (root, label), outputs in zip(index, evaluate_plans(requests, workdir)):
        root.plan_outputs[label] = outputs
    results = {}
    for root in roots:
        results[root.label] = check_country(root)
        EVIDENCE_BY_ROOT[root.label] = list(EVIDENCE)
    return results


EVIDENCE_BY_ROOT: dict[str, list[str]] = {}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repo", type=Path, default=Path(__file__).resolve().parents[2])
    opts = ap.parse_args()
    repo = opts.repo.resolve()
    fixtures = repo / "tests/policy/fixtures/policy"
    passed = failed = 0

    def report(ok: bool, name: str, detail: str = "") -> None:
        nonlocal passed, failed
        if ok:
            passed += 1
            print(f"PASS {name}")
        else:
            failed += 1
            print(f"FAIL {name}{': ' + detail if detail else ''}")

    with tempfile.TemporaryDirectory(prefix="meridian-policy-") as tmp:
        # 1. The real country stacks: no violations.
        results = check_tree(repo, repo / "terraform/countries", Path(tmp) / "real")
        for label, violations in sorted(results.items()):
            report(not violations, f"{label} satisfies {len(RULES)} rules", "\n    " + "\n    ".join(map(str, violations)))
            for line in EVIDENCE_BY_ROOT.get(label, []):
                print(f"     proven: {line}")

        # 2. Failing fixtures: each must produce exactly the rules in its EXPECT file.
        cases = sorted(p for p in fixtures.iterdir() if p.is_dir()) if fixtures.is_dir() else []
        if not cases:
            report(False, "fixtures", f"no fixture cases under {fixtures}")
        fired: set[str] = set()
        for case in cases:
            expect_file = case / "EXPECT"
            expected = {ln.strip() for ln in expect_file.read_text().splitlines() if ln.strip() and not ln.startswith("#")} if expect_file.exists() else set()
            unknown_rules = expected - set(RULES)
            if not expected or unknown_rules:
                report(False, f"fixture {case.name}", f"EXPECT must name rules from {RULES}, got {sorted(expected)}")
                continue
            res = check_tree(repo, case / "countries", Path(tmp) / f"fx-{case.name}")
            got = {v.rule for vs in res.values() for v in vs}
            fired |= got
            detail = f"expected {sorted(expected)}, got {sorted(got)}: " + "; ".join(str(v) for vs in res.values() for v in vs)
            report(got == expected, f"fixture {case.name} is rejected by {sorted(expected)}", detail)
            if got == expected:
                for vs in res.values():
                    for v in vs:
                        print(f"     (as expected) {v}")

        # 3. Every rule has at least one fixture that makes it fail.
        for rule in RULES:
            report(rule in fired, f"rule {rule} has a failing fixture")

    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
