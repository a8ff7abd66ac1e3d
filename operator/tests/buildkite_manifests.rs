//! The manifests Buildkite applies must be what the CRDs accept. Kubernetes silently prunes fields
//! a CRD schema does not know, so a misspelt threshold would deploy a Release with no analysis.
//! This renders the real manifests with buildkite/lib.sh, parses each into the Rust types the
//! CRDs are generated from, and fails if any rendered field would not survive that round trip.
//! lib.sh reads buildkite/slo.yaml through the slo-gate binary (its one reader), so the test
//! builds slo-gate from this checkout and hands it to lib.sh as SLO_GATE_BIN.

use std::process::Command;
use std::sync::OnceLock;

use operator::crd::{Release, Rollout};
use serde::{Serialize, de::DeserializeOwned};
use serde_json::Value;

const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");

/// slo-gate built from this checkout (cargo reports where it put it).
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

fn render(call: &str) -> String {
    let out = Command::new("bash")
        .current_dir(ROOT)
        .args(["-c", &format!("source buildkite/lib.sh && {call}")])
        .env(
            "BUILDKITE_COMMIT",
            "0123456789abcdef0123456789abcdef01234567",
        )
        .env("SLO_GATE_BIN", slo_gate_bin())
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

/// The binary docker/Dockerfile's `ENTRYPOINT ["..."]` names (every service image's one binary).
fn image_entrypoint() -> String {
    let dockerfile =
        std::fs::read_to_string(format!("{ROOT}/docker/Dockerfile")).expect("docker/Dockerfile");
    let line = dockerfile
        .lines()
        .rev()
        .find(|l| l.starts_with("ENTRYPOINT"))
        .expect("an ENTRYPOINT");
    let entry: Vec<String> =
        serde_json::from_str(line.trim_start_matches("ENTRYPOINT").trim()).expect("exec form");
    assert_eq!(entry.len(), 1, "one binary, no fixed arguments: {line}");
    entry[0].clone()
}

#[test]
fn staging_releases_fit_the_release_crd() {
    for service in ["streams", "calls", "learning", "attendance", "playlists"] {
        let yaml = render(&format!("render_release {service}"));
        assert_eq!(
            pruned::<Release>(&yaml),
            Vec::<String>::new(),
            "{service}:\n{yaml}"
        );
        let r: Release = serde_saphyr::from_str(&yaml).expect("parse");
        // Every analysis value is slo.yaml's, as the probe crate reads it.
        let slo =
            probe::slo::SloFile::load(std::path::Path::new(&format!("{ROOT}/buildkite/slo.yaml")))
                .expect("slo.yaml");
        let want = slo.service(service).expect("in slo.yaml");
        let p = &r.spec.analysis.probe;
        assert_eq!(
            (
                p.path.as_str(),
                p.requests,
                p.concurrency,
                p.timeout_ms,
                p.p99_ms.to_bits(),
                p.max_error_rate.to_bits()
            ),
            (
                want.analysis_path.as_str(),
                want.requests,
                want.concurrency,
                u64::try_from(want.timeout.as_millis()).unwrap(),
                want.thresholds.p99_ms.to_bits(),
                want.thresholds.max_error_rate.to_bits()
            ),
            "{service}: thresholds come from slo.yaml"
        );
        assert_eq!(r.spec.preview_service, format!("{service}-preview"));
        // The operator would refuse a Release whose analysis cannot finish before its deadline.
        assert_eq!(
            operator::release::state::invalid_spec(&r.spec),
            None,
            "{service}: refused as rendered"
        );
        // The migration Job runs a binary the image has: docker/Dockerfile's entrypoint.
        assert_eq!(
            r.spec.migration.as_ref().map(|m| m.command.clone()),
            Some(vec![image_entrypoint(), "migrate".to_owned()]),
            "{service}: the migration command"
        );
        // And the Job the operator renders from this Release runs exactly that, on the Release's
        // image, with the database secret: what the cluster would start.
        let job = operator::release::manifests::migration_job(&r, "migrate-test");
        let pod = job.spec.and_then(|s| s.template.spec).expect("a pod spec");
        let c = &pod.containers[0];
        assert_eq!(
            c.command.clone(),
            Some(vec![image_entrypoint(), "migrate".to_owned()]),
            "{service}: the rendered Job's command"
        );
        assert_eq!(c.args, None, "{service}: no extra args after `migrate`");
        assert_eq!(c.image.as_deref(), Some(r.spec.image.as_str()));
        let secrets: Vec<String> = c
            .env_from
            .iter()
            .flatten()
            .filter_map(|e| e.secret_ref.as_ref().map(|s| s.name.clone()))
            .collect();
        assert_eq!(
            secrets,
            vec![format!("{service}-env")],
            "{service}: envFrom"
        );
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

/// buildkite/waves.conf as (wave, bake seconds, countries), read here independently of lib.sh.
fn waves_conf() -> Vec<(String, u32, Vec<String>)> {
    let text = std::fs::read_to_string(format!("{ROOT}/buildkite/waves.conf")).expect("waves.conf");
    text.lines()
        .filter(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
        .map(|l| {
            let mut fields = l.split_whitespace();
            let wave = fields.next().expect("wave").to_owned();
            let bake = fields.next().expect("bake");
            let (n, unit) = bake.split_at(bake.len() - 1);
            let n: u32 = n.parse().expect("bake number");
            let secs = match unit {
                "s" => n,
                "m" => n * 60,
                "h" => n * 3600,
                other => panic!("bake unit {other}"),
            };
            (wave, secs, fields.map(str::to_owned).collect())
        })
        .collect()
}

/// The countries terraform/modules/plan's registry puts on ECS (profile small), read here
/// independently of lib.sh's country_platform.
fn ecs_countries() -> Vec<String> {
    let plan = std::fs::read_to_string(format!("{ROOT}/terraform/modules/plan/main.tf"))
        .expect("modules/plan");
    plan.lines()
        .filter(|l| l.contains("profile = \"small\"") && l.contains("= {"))
        .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
        .collect()
}

#[test]
fn production_rollouts_fit_the_rollout_crd_and_carry_every_wave_in_order() {
    let yaml = render("render_rollout calls");
    assert_eq!(pruned::<Rollout>(&yaml), Vec::<String>::new(), "{yaml}");
    let r: Rollout = serde_saphyr::from_str(&yaml).expect("parse");
    assert_eq!(r.spec.release, "calls");
    // Every wave of waves.conf with a country on EKS, in order, with its bake time; the ECS
    // countries are released by `meridian-deploy ecs` (deploy/ecs/tests/buildkite_wave.rs).
    let rendered: Vec<(String, u32, Vec<String>)> = r
        .spec
        .waves
        .iter()
        .map(|w| {
            (
                w.name.trim_start_matches("wave-").to_owned(),
                w.bake_seconds,
                w.targets.iter().map(|t| t.name.clone()).collect(),
            )
        })
        .collect();
    let ecs = ecs_countries();
    assert!(!ecs.is_empty(), "the registry has small countries");
    let conf: Vec<(String, u32, Vec<String>)> = waves_conf()
        .into_iter()
        .map(|(w, b, c)| (w, b, c.into_iter().filter(|c| !ecs.contains(c)).collect()))
        .filter(|(_, _, c): &(String, u32, Vec<String>)| !c.is_empty())
        .collect();
    assert_eq!(rendered, conf);
    assert!(conf.len() > 1, "more than one wave");
    for t in r.spec.waves.iter().flat_map(|w| &w.targets) {
        assert_eq!(t.kubeconfig_secret, format!("kubeconfig-prod-{}", t.name));
    }
    // The countries of one wave go at once.
    let widest = conf.iter().map(|(_, _, c)| c.len()).max().unwrap();
    assert_eq!(r.spec.max_parallel as usize, widest);
    assert!(
        yaml.contains("name: \"no\""),
        "country codes are quoted (YAML 1.1 reads a bare no as false):\n{yaml}"
    );

    // A wave of healthy Releases finishes inside the Rollout's deadline: each target's cycle
    // (bounded by its progress deadline) plus its verification (the scale-down delay), all of
    // the wave at once (maxParallel is the widest wave).
    let release: Release = serde_saphyr::from_str(&render("render_release calls")).expect("parse");
    assert!(
        r.spec.progress_deadline_seconds
            >= release.spec.progress_deadline_seconds + release.spec.scale_down_delay_seconds,
        "wave deadline {}s shorter than a release ({}s) and its verification ({}s)",
        r.spec.progress_deadline_seconds,
        release.spec.progress_deadline_seconds,
        release.spec.scale_down_delay_seconds
    );

    // One country alone (a new country's first deploy): its wave and bake only.
    let yaml = render("render_rollout calls se");
    assert_eq!(pruned::<Rollout>(&yaml), Vec::<String>::new(), "{yaml}");
    let r: Rollout = serde_saphyr::from_str(&yaml).expect("parse");
    assert_eq!(r.spec.waves.len(), 1);
    assert_eq!(r.spec.waves[0].targets[0].name, "se");
    assert_eq!(r.spec.waves[0].bake_seconds, conf[0].1);
    assert!(r.metadata.name.unwrap().ends_with("-se"));

    // A country on ECS has no cluster for a Rollout to reach.
    let out = Command::new("bash")
        .current_dir(ROOT)
        .args([
            "-c",
            &format!("source buildkite/lib.sh && render_rollout calls {}", ecs[0]),
        ])
        .env("SLO_GATE_BIN", slo_gate_bin())
        .output()
        .expect("run bash");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no country on EKS"));
}

#[test]
fn a_misspelt_field_is_caught() {
    let yaml = render("render_release streams").replace("p99Ms:", "p99LatencyMs:");
    let caught = std::panic::catch_unwind(|| pruned::<Release>(&yaml));
    // Either the typed parse rejects it (required p99Ms missing) or the field is reported pruned.
    assert!(caught.is_err() || !caught.unwrap_or_default().is_empty());
}

#[test]
fn a_service_slo_yaml_does_not_list_is_not_rendered() {
    let out = Command::new("bash")
        .current_dir(ROOT)
        .args(["-c", "source buildkite/lib.sh && render_release billing"])
        .env("SLO_GATE_BIN", slo_gate_bin())
        .output()
        .expect("run bash");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("service billing is not in"), "{stderr}");
}
