//! The manifests Buildkite applies must be what the CRDs accept. Kubernetes silently prunes fields
//! a CRD schema does not know, so a misspelt threshold would deploy a Release with no analysis.
//! This renders the real manifests with buildkite/lib.sh, parses each into the Rust types the
//! CRDs are generated from, and fails if any rendered field would not survive that round trip.

use std::process::Command;

use operator::crd::{Release, Rollout};
use serde::{Serialize, de::DeserializeOwned};
use serde_json::Value;

fn render(call: &str) -> String {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let out = Command::new("bash")
        .current_dir(root)
        .args(["-c", &format!("source buildkite/lib.sh && {call}")])
        .env(
            "BUILDKITE_COMMIT",
            "0123456789abcdef0123456789abcdef01234567",
        )
        .output()
        .expect("run bash");
    assert!(
        out.status.success(),
        "{call} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8")
}

/// Every key path of `v`, e.g. `spec.analysis.probe.p99Ms`.
fn paths(v: &Value, prefix: &str, out: &mut Vec<String>) {
    match v {
        Value::Object(map) => {
            for (k, child) in map {
                let p = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                out.push(p.clone());
                paths(child, &p, out);
            }
        }
        Value::Array(items) => {
            for (i, child) in items.iter().enumerate() {
                paths(child, &format!("{prefix}[{i}]"), out);
            }
        }
        _ => {}
    }
}

/// Parses `yaml` as `T` and returns the rendered fields `T` does not keep.
fn pruned<T: DeserializeOwned + Serialize>(yaml: &str) -> Vec<String> {
    let rendered: Value = serde_saphyr::from_str(yaml).expect("rendered YAML parses");
    let typed: T = serde_json::from_value(rendered.clone())
        .unwrap_or_else(|e| panic!("does not fit the CRD types: {e}\n{yaml}"));
    let kept = serde_json::to_value(&typed).expect("serialize");
    let (mut want, mut have) = (Vec::new(), Vec::new());
    paths(&rendered, "", &mut want);
    paths(&kept, "", &mut have);
    want.into_iter().filter(|p| !have.contains(p)).collect()
}

#[test]
fn staging_releases_fit_the_release_crd() {
    for service in ["streams", "calls"] {
        let yaml = render(&format!("render_release {service}"));
        assert_eq!(
            pruned::<Release>(&yaml),
            Vec::<String>::new(),
            "{service}:\n{yaml}"
        );
        let r: Release = serde_saphyr::from_str(&yaml).expect("parse");
        assert!(
            r.spec.analysis.probe.p99_ms > 0.0,
            "thresholds come from slo.yaml"
        );
        assert_eq!(r.spec.preview_service, format!("{service}-preview"));
        // The analysis probes as the slo-probe identity, from the Secret the Role may read.
        let secret = r
            .spec
            .analysis
            .probe
            .bearer_token_secret
            .expect("token Secret");
        assert_eq!(
            (secret.name.as_str(), secret.key.as_str()),
            (operator::rbac::DEFAULT_PROBE_TOKEN_SECRET, "token")
        );
    }
}

#[test]
fn production_rollouts_fit_the_rollout_crd() {
    let yaml = render("render_rollout calls se 30m");
    assert_eq!(pruned::<Rollout>(&yaml), Vec::<String>::new(), "{yaml}");
    let r: Rollout = serde_saphyr::from_str(&yaml).expect("parse");
    assert_eq!(r.spec.waves.len(), 1);
    assert_eq!(r.spec.waves[0].bake_seconds, 1800);
    assert_eq!(r.spec.release, "calls");
}

#[test]
fn a_misspelt_field_is_caught() {
    let yaml = render("render_release streams").replace("p99Ms:", "p99LatencyMs:");
    let caught = std::panic::catch_unwind(|| pruned::<Release>(&yaml));
    // Either the typed parse rejects it (required p99Ms missing) or the field is reported pruned.
    assert!(caught.is_err() || !caught.unwrap_or_default().is_empty());
}
