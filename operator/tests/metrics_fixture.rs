//! What the operator's `/metrics` serves, checked in: `tests/fixtures/metrics.txt` is the text the
//! real router renders after every series has been recorded through the same functions the
//! reconcilers call, with realistic values (one cluster running both controllers: streams
//! released, calls rolled back after a breached analysis, which halted its Rollout, platform held
//! after an inconclusive verification, an older streams Rollout superseded). Dashboards
//! and alert rules can be tried against it in a real Prometheus.
//!
//! The exporter writes metric families and series in hash-map order, so the text is put in a
//! canonical order (families by name, series by labels, a histogram's lines kept together in
//! their rendered order); nothing else is changed. Regenerate after changing a series:
//! `UPDATE_FIXTURES=1 cargo nextest run -p meridian-operator --test metrics_fixture`.

use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, to_bytes};
use axum::http::{Request, StatusCode};
use k8s_openapi::jiff::Timestamp;
use operator::crd::{Phase, RolloutPhase};
use operator::metrics::{self as om, Controller, ErrorKind, Held, Verdict};
use tower::ServiceExt;

const FIXTURE: &str = "tests/fixtures/metrics.txt";

fn at(t: &str) -> Timestamp {
    t.parse().expect("a timestamp")
}

/// Every series once or more, as a day of this operator would leave them.
fn exercise() {
    om::register(&Controller::ALL);
    for ms in [8, 14, 21, 190, 6_200] {
        om::reconciled(Controller::Release, Ok(()), Duration::from_millis(ms));
    }
    om::reconciled(
        Controller::Release,
        Err(ErrorKind::KubeApi),
        Duration::from_millis(31),
    );
    for ms in [85, 420] {
        om::reconciled(Controller::Rollout, Ok(()), Duration::from_millis(ms));
    }
    om::error(Controller::Rollout, ErrorKind::Watch);

    let ns = "meridian";
    om::release_phase(
        ns,
        "streams",
        "streams",
        Phase::Succeeded,
        Some(at("2026-11-23T11:42:10Z")),
    );
    om::release_phase(
        ns,
        "calls",
        "calls",
        Phase::RolledBack,
        Some(at("2026-11-23T11:58:30Z")),
    );
    om::release_analysis(ns, "streams", Verdict::Passed);
    om::release_analysis(ns, "streams", Verdict::Passed);
    om::release_analysis(ns, "calls", Verdict::Passed);
    om::release_analysis(ns, "calls", Verdict::Breached);
    om::release_held(ns, "streams", "streams", None);
    om::release_held(ns, "calls", "calls", None);
    om::rollout_halted(ns, "streams-3f2c1ab9d0e4-se", false);
    om::rollout_phase(ns, "streams-3f2c1ab9d0e4-se", RolloutPhase::Baking);
    om::rollout_halted(ns, "calls-3f2c1ab9d0e4-se", true);
    om::rollout_phase(ns, "calls-3f2c1ab9d0e4-se", RolloutPhase::RolledBack);
    // An older build's Rollout the streams one above took over.
    om::rollout_halted(ns, "streams-0a1b2c3d4e5f-se", false);
    om::rollout_phase(ns, "streams-0a1b2c3d4e5f-se", RolloutPhase::Superseded);
    // A third Release held for a human: its verification after promotion was inconclusive.
    om::release_phase(
        ns,
        "platform",
        "platform",
        Phase::Succeeded,
        Some(at("2026-11-23T11:50:00Z")),
    );
    om::release_held(ns, "platform", "platform", Some(Held::Inconclusive));
}

/// Families sorted by name; within one, series sorted by their labels without `le`, each
/// histogram series' buckets, sum and count kept in the order rendered.
fn canonical(text: &str) -> String {
    let mut families: Vec<(String, Vec<&str>, Vec<&str>)> = text
        .split("\n\n")
        .filter(|block| !block.trim().is_empty())
        .map(|block| {
            let (header, samples): (Vec<&str>, Vec<&str>) =
                block.lines().partition(|l| l.starts_with('#'));
            let name = header
                .iter()
                .find_map(|l| l.strip_prefix("# TYPE "))
                .and_then(|l| l.split(' ').next())
                .expect("every family has a TYPE line")
                .to_owned();
            (name, header, samples)
        })
        .collect();
    families.sort_by(|a, b| a.0.cmp(&b.0));
    let series_key = |line: &str| {
        let labels = line
            .split_once('{')
            .and_then(|(_, rest)| rest.split_once('}'))
            .map_or("", |(labels, _)| labels);
        let without_le: Vec<&str> = labels
            .split(',')
            .filter(|l| !l.starts_with("le="))
            .collect();
        let name = line.split(['{', ' ']).next().unwrap_or_default();
        let rank = if name.ends_with("_bucket") {
            0
        } else if name.ends_with("_sum") {
            1
        } else {
            2
        };
        (without_le.join(","), rank)
    };
    let mut out = String::new();
    for (_, header, mut samples) in families {
        samples.sort_by_key(|l| series_key(l)); // stable: buckets keep their order
        for line in header.iter().chain(&samples) {
            out.push_str(line);
            out.push('\n');
        }
        out.push('\n');
    }
    out
}

async fn served_metrics() -> String {
    let recorder = om::recorder();
    metrics::with_local_recorder(&recorder, exercise);
    let app = operator::serve::router(Arc::default(), recorder.handle());
    let res = app
        .oneshot(Request::get("/metrics").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let body = to_bytes(res.into_body(), 1 << 20).await.unwrap();
    String::from_utf8(body.to_vec()).unwrap()
}

#[tokio::test]
async fn served_metrics_match_the_checked_in_fixture() {
    let rendered = canonical(&served_metrics().await);
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(FIXTURE);
    if std::env::var_os("UPDATE_FIXTURES").is_some_and(|v| v == "1") {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, &rendered).unwrap();
        return;
    }
    let checked_in = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        checked_in == rendered,
        "operator/{FIXTURE} is stale: run `UPDATE_FIXTURES=1 cargo nextest run -p meridian-operator --test metrics_fixture`\n--- rendered:\n{rendered}"
    );
}

/// The fixture holds every series the README promises, with its type.
#[tokio::test]
async fn the_fixture_has_every_series_with_its_type() {
    let text = canonical(&served_metrics().await);
    for (name, kind) in [
        (om::RECONCILES, "counter"),
        (om::RECONCILE_ERRORS, "counter"),
        (om::RECONCILE_DURATION, "histogram"),
        (om::RELEASE_PHASE, "gauge"),
        (om::RELEASE_PHASE_SINCE, "gauge"),
        (om::RELEASE_ANALYSIS, "counter"),
        (om::RELEASE_HELD, "gauge"),
        (om::ROLLOUT_HALTED, "gauge"),
        (om::ROLLOUT_PHASE, "gauge"),
    ] {
        assert!(
            text.contains(&format!("# TYPE {name} {kind}\n")),
            "{name} {kind}\n{text}"
        );
        assert!(
            text.contains(&format!("# HELP {name} ")),
            "{name} has no help"
        );
    }
    // Rendering twice gives the same canonical text: the fixture is deterministic.
    assert_eq!(text, canonical(&served_metrics().await));
}

#[test]
fn canonical_order_sorts_families_and_series_but_keeps_buckets_in_order() {
    let text = "# TYPE b counter\nb{x=\"2\"} 1\nb{x=\"1\"} 2\n\n# TYPE a histogram\n\
                a_bucket{c=\"z\",le=\"1\"} 1\na_bucket{c=\"z\",le=\"+Inf\"} 1\na_sum{c=\"z\"} 0.5\na_count{c=\"z\"} 1\n\
                a_bucket{c=\"y\",le=\"1\"} 0\na_bucket{c=\"y\",le=\"+Inf\"} 0\na_sum{c=\"y\"} 0\na_count{c=\"y\"} 0\n\n";
    assert_eq!(
        canonical(text),
        "# TYPE a histogram\n\
         a_bucket{c=\"y\",le=\"1\"} 0\na_bucket{c=\"y\",le=\"+Inf\"} 0\na_sum{c=\"y\"} 0\na_count{c=\"y\"} 0\n\
         a_bucket{c=\"z\",le=\"1\"} 1\na_bucket{c=\"z\",le=\"+Inf\"} 1\na_sum{c=\"z\"} 0.5\na_count{c=\"z\"} 1\n\n\
         # TYPE b counter\nb{x=\"1\"} 2\nb{x=\"2\"} 1\n\n"
    );
}

/// The `meridian_…` series names a PromQL expression reads: identifiers starting `meridian_` and
/// ending at `{`, `[`, whitespace, `)`, `,` or the end (recording rules, `meridian:…`, are not
/// the operator's and do not match).
fn series_names(expr: &str) -> std::collections::BTreeSet<String> {
    let ident = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == ':';
    let mut out = std::collections::BTreeSet::new();
    let mut rest = expr;
    while let Some(i) = rest.find("meridian_") {
        let before = rest[..i].chars().next_back();
        let tail = &rest[i..];
        let end = tail.find(|c: char| !ident(c)).unwrap_or(tail.len());
        let name = &tail[..end];
        let next = tail[end..].chars().next();
        let ends_well =
            next.is_none_or(|c| matches!(c, '{' | '[' | ')' | ',') || c.is_whitespace());
        if !before.is_some_and(ident) && ends_well && !name.contains(':') {
            out.insert(name.to_owned());
        }
        rest = &tail[end..];
    }
    out
}

/// Names among `wanted` that no sample line of the served text carries.
fn missing_from(served: &str, wanted: &std::collections::BTreeSet<String>) -> Vec<String> {
    let exported: std::collections::BTreeSet<&str> = served
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| l.split(['{', ' ']).next())
        .collect();
    wanted
        .iter()
        .filter(|n| !exported.contains(n.as_str()))
        .cloned()
        .collect()
}

fn repo_file(path: &str) -> String {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(path);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// Every PromQL expression of the delivery alert rules and of the delivery dashboard.
fn delivery_exprs() -> Vec<(String, String)> {
    let rules: serde_json::Value =
        serde_saphyr::from_str(&repo_file("runbooks/rules/delivery.rules.yml")).unwrap();
    let mut out = Vec::new();
    for group in rules["groups"].as_array().expect("rule groups") {
        for rule in group["rules"].as_array().expect("rules") {
            let name = rule["alert"].as_str().or(rule["record"].as_str()).unwrap();
            out.push((name.to_owned(), rule["expr"].as_str().unwrap().to_owned()));
        }
    }
    fn walk(v: &serde_json::Value, out: &mut Vec<(String, String)>) {
        match v {
            serde_json::Value::Object(m) => {
                for (k, v) in m {
                    match (k.as_str(), v.as_str()) {
                        ("expr", Some(e)) => out.push(("delivery.json".into(), e.to_owned())),
                        _ => walk(v, out),
                    }
                }
            }
            serde_json::Value::Array(a) => a.iter().for_each(|v| walk(v, out)),
            _ => {}
        }
    }
    let dashboard: serde_json::Value =
        serde_json::from_str(&repo_file("runbooks/dashboards/delivery.json")).unwrap();
    walk(&dashboard, &mut out);
    out
}

/// An alert on a series the operator does not export can never fire (the promtool tests feed
/// it synthetic series, so they cannot tell): every `meridian_…` name in the delivery alerts and
/// dashboard must be in what `/metrics` serves.
#[tokio::test]
async fn every_series_a_delivery_alert_or_panel_reads_is_served() {
    let served = served_metrics().await;
    let exprs = delivery_exprs();
    let alerts = exprs
        .iter()
        .filter(|(n, _)| n.starts_with("Meridian"))
        .count();
    assert!(alerts >= 4, "read {alerts} alerts: {exprs:?}");
    let mut read = std::collections::BTreeSet::new();
    for (name, expr) in &exprs {
        let names = series_names(expr);
        assert!(
            !names.is_empty(),
            "{name} reads no meridian_ series: {expr}"
        );
        let missing = missing_from(&served, &names);
        assert!(
            missing.is_empty(),
            "{name} reads {missing:?}, which the operator's /metrics does not serve: {expr}"
        );
        read.extend(names);
    }
    // The check itself: a name the operator does not export is reported.
    let made_up =
        series_names("max(meridian_rollout_nonexistent{a=\"b\"}) and meridian_release_phase");
    assert_eq!(
        missing_from(&served, &made_up),
        vec!["meridian_rollout_nonexistent".to_owned()]
    );
    assert!(read.contains(om::RELEASE_HELD), "{read:?}");
}

#[test]
fn series_names_are_the_meridian_identifiers_of_an_expression() {
    let names = series_names(
        "(meridian_release_phase{phase!~\"x\"} == 1) and on (namespace) \
         ((time() - meridian_release_phase_since_timestamp_seconds) > 1800) \
         or rate(meridian_operator_reconciles_total[5m]) \
         or meridian:http_error_ratio:rate5m or meridian_rollout_halted",
    );
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    assert_eq!(
        names,
        vec![
            "meridian_operator_reconciles_total",
            "meridian_release_phase",
            "meridian_release_phase_since_timestamp_seconds",
            "meridian_rollout_halted",
        ]
    );
}
