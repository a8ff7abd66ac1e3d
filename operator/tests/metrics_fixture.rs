//! What the operator's `/metrics` serves, checked in: `tests/fixtures/metrics.txt` is the text the
//! real router renders after every series has been recorded through the same functions the
//! reconcilers call, with realistic values (one cluster running both controllers: streams
//! released, calls rolled back after a breached analysis, which halted its Rollout). Dashboards
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
use operator::crd::Phase;
use operator::metrics::{self as om, Controller, ErrorKind, Verdict};
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
    om::rollout_halted(ns, "streams-3f2c1ab9d0e4-se", false);
    om::rollout_halted(ns, "calls-3f2c1ab9d0e4-se", true);
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
        (om::ROLLOUT_HALTED, "gauge"),
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
