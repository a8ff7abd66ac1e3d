#!/usr/bin/env python3
"""Check that alerts and runbook pages point at each other, and that every alert is tested.

    check_runbooks.py [RUNBOOKS_DIR]      (default: the folder this file is in)

Rules, each reported with the file it concerns:
  1. every alerting rule in rules/*.rules.yml has labels.severity (page|ticket),
     annotations summary + description, and annotations.runbook_url = RUNBOOK_BASE + a path
     that exists under RUNBOOKS_DIR;
  2. every alert page has the sections Symptom, Impact, Queries, Diagnosis, Mitigation,
     Escalation and names its alert;
  3. every page under pages/ and procedures/ is linked from an alert's runbook_url or
     from README.md (the index); every relative link in README.md resolves;
  4. every alert has, in tests/*.test.yml, a promtool case where it fires (non-empty
     exp_alerts) and one where it stays silent (empty exp_alerts);
  5. alert names are unique;
  6. dashboards: every alert page links at least one dashboard panel, as a Markdown link whose
     text is the panel's exact title and whose target is the dashboard JSON under dashboards/
     (`[Snapshot age per replica](../dashboards/calls.json)`); every such link, in pages/ and
     procedures/, must name a panel that exists in that file; every dashboards/*.json parses
     and its panel titles are unique (a title is the link's anchor).
Exit status 1 on any violation. Needs a YAML parser: ruamel.yaml (installed with
check-jsonschema) or PyYAML.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

RUNBOOK_BASE = "https://github.com/meridian-dev/meridian/blob/main/runbooks/"
SECTIONS = ("Symptom", "Impact", "Queries", "Diagnosis", "Mitigation", "Escalation")
SEVERITIES = ("page", "ticket")


def load_yaml(path: Path):
    try:
        from ruamel.yaml import YAML

        return YAML(typ="safe").load(path.read_text())
    except ImportError:
        import yaml  # type: ignore[import-not-found]

        return yaml.safe_load(path.read_text())


# [panel title](relative/path/to/dashboard.json), optionally with a #fragment after the file.
DASHBOARD_LINK = re.compile(r"\[([^\]]+)\]\(([^)#\s]+\.json)(?:#[^)]*)?\)")


def panel_titles(panels) -> list[str]:
    """Titles of every panel, including those nested in (collapsed) rows; rows themselves excluded."""
    out: list[str] = []
    for p in panels or []:
        if p.get("type") == "row":
            out.extend(panel_titles(p.get("panels")))
        elif p.get("title"):
            out.append(p["title"])
    return out


def check_dashboards(root: Path, errors: list[str]) -> None:
    boards: dict[Path, set[str]] = {}
    for db in sorted((root / "dashboards").glob("*.json")):
        try:
            titles = panel_titles(json.loads(db.read_text()).get("panels"))
        except ValueError as e:
            errors.append(f"{db.relative_to(root)}: not valid JSON: {e}")
            continue
        for t in sorted({t for t in titles if titles.count(t) > 1}):
            errors.append(f"{db.relative_to(root)}: duplicate panel title {t!r} (pages link panels by title)")
        boards[db.resolve()] = set(titles)
    alert_pages = {p.resolve() for p in root.glob("pages/*.md")}
    for page in sorted([*root.glob("pages/*.md"), *root.glob("procedures/*.md")]):
        links = 0
        for text, target in DASHBOARD_LINK.findall(page.read_text()):
            path = (page.parent / target).resolve()
            if path.parent != (root / "dashboards").resolve():
                continue
            links += 1
            rel = path.relative_to(root) if root in path.parents else target
            if path not in boards:
                errors.append(f"{page.relative_to(root)}: links to a missing dashboard: {target}")
            elif text not in boards[path]:
                errors.append(f"{page.relative_to(root)}: links to a missing panel \"{text}\" in {rel}")
        if page.resolve() in alert_pages and not links:
            errors.append(
                f"{page.relative_to(root)}: links no dashboard panel "
                "(add [<panel title>](../dashboards/<dashboard>.json) under Queries)"
            )


def main() -> int:
    root = Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).parent).resolve()
    errors: list[str] = []
    linked: set[Path] = set()
    alerts: dict[str, Path] = {}

    rule_files = sorted((root / "rules").glob("*.rules.yml"))
    if not rule_files:
        errors.append(f"{root / 'rules'}: no *.rules.yml files")
    for rf in rule_files:
        doc = load_yaml(rf) or {}
        for group in doc.get("groups") or []:
            for rule in group.get("rules") or []:
                name = rule.get("alert")
                if not name:
                    continue
                where = f"{rf.relative_to(root)}: alert {name}"
                if name in alerts:
                    errors.append(f"{where}: duplicate alert name (also in {alerts[name].name})")
                alerts[name] = rf
                labels = rule.get("labels") or {}
                ann = rule.get("annotations") or {}
                if labels.get("severity") not in SEVERITIES:
                    errors.append(f"{where}: labels.severity must be one of {SEVERITIES}")
                for key in ("summary", "description"):
                    if not ann.get(key):
                        errors.append(f"{where}: annotations.{key} is missing")
                url = ann.get("runbook_url") or ""
                if not url.startswith(RUNBOOK_BASE):
                    errors.append(f"{where}: annotations.runbook_url must start with {RUNBOOK_BASE}")
                    continue
                page = (root / url[len(RUNBOOK_BASE):]).resolve()
                if root not in page.parents or not page.is_file():
                    errors.append(f"{where}: runbook_url points at a missing page: {url}")
                    continue
                linked.add(page)
                text = page.read_text()
                headings = set(re.findall(r"^##\s+(\w+)", text, re.M))
                missing = [s for s in SECTIONS if s not in headings]
                if missing:
                    errors.append(f"{page.relative_to(root)}: missing sections {missing}")
                if name not in text:
                    errors.append(f"{page.relative_to(root)}: does not name its alert {name}")

    index = root / "README.md"
    if not index.is_file():
        errors.append(f"{index}: the index page is missing")
    else:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", index.read_text()):
            if re.match(r"^[a-z]+://", target):
                continue
            path = (root / target).resolve()
            if not path.exists():
                errors.append(f"README.md: link to a missing file: {target}")
            else:
                linked.add(path)

    for page in sorted([*root.glob("pages/*.md"), *root.glob("procedures/*.md")]):
        if page.resolve() not in linked:
            errors.append(f"{page.relative_to(root)}: not linked from any alert's runbook_url nor from README.md")

    fires: set[str] = set()
    silent: set[str] = set()
    test_files = sorted((root / "tests").glob("*.test.yml"))
    for tf in test_files:
        doc = load_yaml(tf) or {}
        for case in doc.get("tests") or []:
            for art in case.get("alert_rule_test") or []:
                (fires if art.get("exp_alerts") else silent).add(art.get("alertname"))
    for name, rf in sorted(alerts.items()):
        if name not in fires:
            errors.append(f"{rf.relative_to(root)}: alert {name} has no promtool test where it fires")
        if name not in silent:
            errors.append(f"{rf.relative_to(root)}: alert {name} has no promtool test where it stays silent")
    for name in sorted((fires | silent) - set(alerts)):
        errors.append(f"tests: promtool case for unknown alert {name}")

    check_dashboards(root, errors)

    for e in errors:
        print(f"runbooks: {e}", file=sys.stderr)
    pages = len(list(root.glob("pages/*.md"))) + len(list(root.glob("procedures/*.md")))
    dashboards = len(list(root.glob("dashboards/*.json")))
    print(
        f"runbooks: {len(alerts)} alerts, {pages} pages, {len(test_files)} test files, "
        f"{dashboards} dashboards, {len(errors)} problems"
    )
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
