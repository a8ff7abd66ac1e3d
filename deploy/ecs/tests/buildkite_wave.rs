//! The production step's plan for a wave that mixes platforms: `DRY_RUN=1
//! buildkite/deploy-prod.sh` prints, wave by wave, a Rollout per service for the wave's EKS
//! countries and a Release per service and ECS country (headed by the `meridian-deploy ecs`
//! target it goes to). Each document must fit its CRD type without losing a field (as
//! operator/tests/buildkite_manifests.rs checks the staging and Rollout manifests), and each ECS
//! Release must be one this command accepts.

use std::process::Command;
use std::sync::OnceLock;

use operator::crd::{Release, Rollout};
use serde::{Serialize, de::DeserializeOwned};
use serde_json::Value;

const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");
const SHA: &str = "0123456789abcdef0123456789abcdef01234567";

/// slo-gate built from this checkout: lib.sh reads slo.yaml only through it.
fn slo_gate_bin() -> &'static str {
    static BIN: OnceLock<String> = OnceLock::new();
    BIN.get_or_init(|| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| env!("CARGO").to_owned());
        let out = Command::new(cargo)
            .current_dir(ROOT)
            .args([
                "build",
                "--quiet",
                "--locked",
                "-p",
                "meridian-probe",
                "--bin",
                "slo-gate",
                "--message-format=json",
            ])
            .output()
            .expect("run cargo build");
        assert!(
            out.status.success(),
            "cargo build slo-gate: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|line| serde_json::from_str::<Value>(line).ok())
            .find(|m| m["reason"] == "compiler-artifact" && m["target"]["name"] == "slo-gate")
            .and_then(|m| m["executable"].as_str().map(str::to_owned))
            .expect("cargo names the slo-gate executable")
    })
}

/// `DRY_RUN=1 buildkite/deploy-prod.sh` over `waves_file`, split into its documents.
fn dry_run(waves_file: &str) -> Vec<String> {
    let out = Command::new("bash")
        .current_dir(ROOT)
        .args(["buildkite/deploy-prod.sh"])
        .env("DRY_RUN", "1")
        .env("WAVES_FILE", format!("{ROOT}/{waves_file}"))
        .env("BUILDKITE_COMMIT", SHA)
        .env("SLO_GATE_BIN", slo_gate_bin())
        .output()
        .expect("run bash");
    assert!(
        out.status.success(),
        "deploy-prod.sh dry run failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .expect("utf-8")
        .split("---\n")
        .filter(|d| !d.trim().is_empty())
        .map(str::to_owned)
        .collect()
}

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

/// Parses `yaml` as `T` and returns the rendered fields `T` does not keep (what the API server
/// would prune).
fn typed<T: DeserializeOwned + Serialize>(yaml: &str) -> T {
    let rendered: Value = serde_saphyr::from_str(yaml).expect("rendered YAML parses");
    let typed: T = serde_json::from_value(rendered.clone())
        .unwrap_or_else(|e| panic!("does not fit the CRD types: {e}\n{yaml}"));
    let kept = serde_json::to_value(&typed).expect("serialize");
    let (mut want, mut have) = (Vec::new(), Vec::new());
    paths(&rendered, "", &mut want);
    paths(&kept, "", &mut have);
    let lost: Vec<String> = want.into_iter().filter(|p| !have.contains(p)).collect();
    assert!(
        lost.is_empty(),
        "fields the CRD would prune: {lost:?}\n{yaml}"
    );
    typed
}

/// One planned step: the wave, the platform, the service and its countries.
#[derive(Debug, PartialEq, Eq)]
struct Step {
    wave: String,
    platform: &'static str,
    service: String,
    countries: Vec<String>,
}

fn plan(waves_file: &str) -> Vec<Step> {
    let mut steps = Vec::new();
    for doc in dry_run(waves_file) {
        let kind: Value = serde_saphyr::from_str(&doc).expect("a YAML document");
        match kind["kind"].as_str() {
            Some("Rollout") => {
                let r: Rollout = typed(&doc);
                assert_eq!(r.spec.waves.len(), 1, "one wave per Rollout:\n{doc}");
                assert!(r.spec.image.ends_with(&format!(":{SHA}")));
                let w = &r.spec.waves[0];
                steps.push(Step {
                    wave: w.name.trim_start_matches("wave-").to_owned(),
                    platform: "eks",
                    service: r.spec.release.clone(),
                    countries: w.targets.iter().map(|t| t.name.clone()).collect(),
                });
            }
            Some("Release") => {
                let r: Release = typed(&doc);
                // The command's own reading: the spec must be one ECS can honour.
                let spec = deploy_ecs::release_spec_from_manifest(&doc)
                    .unwrap_or_else(|e| panic!("meridian-deploy ecs refuses it: {e}\n{doc}"));
                assert_eq!(spec, r.spec);
                assert!(spec.image.ends_with(&format!(":{SHA}")));
                let notes = r.metadata.annotations.expect("annotations");
                assert_eq!(notes["meridian.dev/platform"], "ecs");
                let cc = notes["meridian.dev/country"].clone();
                assert!(
                    doc.starts_with(&format!(
                        "# meridian-deploy ecs --target /meridian/prod/{cc}/ecs-deploy/{}\n",
                        spec.service
                    )),
                    "headed by its ECS target:\n{doc}"
                );
                steps.push(Step {
                    wave: notes["meridian.dev/wave"].clone(),
                    platform: "ecs",
                    service: spec.service.clone(),
                    countries: vec![cc],
                });
            }
            other => panic!("unexpected document kind {other:?}:\n{doc}"),
        }
    }
    steps
}

fn services(steps: &[Step]) -> Vec<String> {
    let mut s: Vec<String> = steps.iter().map(|s| s.service.clone()).collect();
    s.sort();
    s.dedup();
    s
}

#[test]
fn a_wave_mixing_eks_and_ecs_runs_a_rollout_and_meridian_deploy_ecs_in_that_wave() {
    let steps = plan("tests/policy/fixtures/delivery/waves-mixed.conf");
    let services = services(&steps);
    assert!(
        services.len() >= 3,
        "every deployable service: {services:?}"
    );
    // Waves in order; inside a wave, every service gets a Rollout for its EKS countries and a
    // Release per ECS country.
    let waves: Vec<&str> = steps.iter().map(|s| s.wave.as_str()).collect();
    let mut sorted = waves.clone();
    sorted.sort_unstable();
    assert_eq!(waves, sorted, "documents come wave by wave");
    for s in &services {
        let of = |wave: &str, platform: &str| -> Vec<Vec<String>> {
            steps
                .iter()
                .filter(|x| x.service == *s && x.wave == wave && x.platform == platform)
                .map(|x| x.countries.clone())
                .collect()
        };
        assert_eq!(of("1", "eks"), vec![vec!["se".to_owned()]], "{s}");
        assert!(of("1", "ecs").is_empty(), "{s}");
        assert_eq!(
            of("2", "eks"),
            vec![vec!["no".to_owned()]],
            "{s}: no on EKS"
        );
        assert_eq!(
            of("2", "ecs"),
            vec![vec!["dk".to_owned()]],
            "{s}: dk on ECS"
        );
        assert!(of("3", "eks").is_empty(), "{s}");
        assert_eq!(of("3", "ecs"), vec![vec!["fi".to_owned()]], "{s}");
    }
}

#[test]
fn the_production_waves_release_dk_and_fi_on_ecs_after_se_and_no_on_eks() {
    let steps = plan("buildkite/waves.conf");
    for s in &steps {
        let small_only = s.countries.iter().all(|c| c == "dk" || c == "fi");
        let large_only = s.countries.iter().all(|c| c == "se" || c == "no");
        match s.platform {
            "ecs" => assert!(small_only, "{s:?}"),
            _ => assert!(large_only, "{s:?}"),
        }
    }
    let last_eks = steps
        .iter()
        .rposition(|s| s.platform == "eks")
        .expect("EKS");
    let first_ecs = steps.iter().position(|s| s.platform == "ecs").expect("ECS");
    assert!(last_eks < first_ecs, "waves.conf releases dk + fi last");
}
