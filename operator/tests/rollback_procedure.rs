//! runbooks/procedures/rollback.md is run by a human under pressure: every Release status field it
//! reads and every `meridian.dev/` label it selects or shows must be one the operator really
//! writes, or the step prints nothing (as `status.previousImage` and a `meridian.dev/image-sha`
//! column once did).

use std::collections::BTreeSet;

use kube::CustomResourceExt;
use operator::release::manifests::{COLOUR_LABEL, RELEASE_LABEL};

fn procedure() -> String {
    let p =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../runbooks/procedures/rollback.md");
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// Every `status.a.b` path in `text` (as in `{.status.activeImage}` or `status.history`).
fn status_paths(text: &str) -> BTreeSet<Vec<String>> {
    let mut out = BTreeSet::new();
    let mut rest = text;
    while let Some(i) = rest.find("status.") {
        let before = rest[..i].chars().next_back();
        let tail = &rest[i + "status.".len()..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '.'))
            .unwrap_or(tail.len());
        let path: Vec<String> = tail[..end]
            .split('.')
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect();
        // `.status.x` or a bare `status.x`, not e.g. `readyStatus.x`.
        if !before.is_some_and(|c| c.is_ascii_alphanumeric()) && !path.is_empty() {
            out.insert(path);
        }
        rest = &tail[end..];
    }
    out
}

/// Every `meridian.dev/<key>` label key in `text` (API groups such as `meridian.dev/v1alpha1`
/// are not labels).
fn label_keys(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = text;
    while let Some(i) = rest.find("meridian.dev/") {
        let tail = &rest[i..];
        let end = tail["meridian.dev/".len()..]
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
            .map_or(tail.len(), |e| e + "meridian.dev/".len());
        let key = &tail[..end];
        if !key.starts_with("meridian.dev/v1") {
            out.insert(key.to_owned());
        }
        rest = &tail[end..];
    }
    out
}

fn resolves(schema: &serde_json::Value, path: &[String]) -> bool {
    let mut node = schema;
    for part in path {
        // Lists (`status.history`) are entered through their items.
        if node["type"] == "array" {
            node = &node["items"];
        }
        match node["properties"].get(part) {
            Some(next) => node = next,
            None => return false,
        }
    }
    true
}

#[test]
fn every_status_field_the_rollback_procedure_reads_is_in_the_release_crd() {
    let crd = serde_json::to_value(operator::crd::Release::crd()).unwrap();
    let status = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["status"];
    let text = procedure();
    let paths = status_paths(&text);
    for wanted in ["history", "activeImage"] {
        assert!(
            paths.iter().any(|p| p[0] == wanted),
            "rollback.md no longer reads status.{wanted}: {paths:?}"
        );
    }
    for path in &paths {
        assert!(
            resolves(status, path),
            "rollback.md reads status.{}, which the Release CRD does not have",
            path.join(".")
        );
    }
    // The check itself: a field the operator never wrote is reported.
    assert!(!resolves(status, &["previousImage".to_owned()]));
    assert!(resolves(
        status,
        &["pendingScaleDown".to_owned(), "colour".to_owned()]
    ));
}

#[test]
fn every_label_the_rollback_procedure_uses_is_one_the_operator_sets() {
    let keys = label_keys(&procedure());
    assert!(keys.contains(COLOUR_LABEL), "{keys:?}");
    let known: BTreeSet<String> = [RELEASE_LABEL, COLOUR_LABEL].map(str::to_owned).into();
    let unknown: Vec<&String> = keys.difference(&known).collect();
    assert!(
        unknown.is_empty(),
        "rollback.md uses labels the operator does not set: {unknown:?}"
    );
    assert_eq!(
        label_keys("-L meridian.dev/colour,meridian.dev/image-sha in meridian.dev/v1alpha1"),
        ["meridian.dev/colour", "meridian.dev/image-sha"]
            .map(str::to_owned)
            .into()
    );
}
