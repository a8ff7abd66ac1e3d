//! The checked-in CRD YAML must be exactly what the Rust types generate, so `kubectl apply -f
//! operator/deploy/` installs the schema the reconcilers read. Regenerate with
//! `cargo run -p meridian-operator -- crd > operator/deploy/crds.yaml`.

#[test]
fn checked_in_crds_match_the_rust_types() {
    let checked_in = include_str!("../deploy/crds.yaml");
    let generated = operator::crd::crds_yaml();
    assert!(
        checked_in == generated,
        "operator/deploy/crds.yaml is stale: run `cargo run -p meridian-operator -- crd > operator/deploy/crds.yaml`"
    );
}

#[test]
fn crds_have_the_expected_names_scopes_and_status() {
    let docs: Vec<serde_json::Value> = operator::crd::crds_yaml()
        .split("---\n")
        .filter(|d| !d.trim().is_empty())
        .map(|d| serde_saphyr::from_str(d).expect("YAML parses"))
        .collect();
    let summary: Vec<(String, String, String)> = docs
        .iter()
        .map(|d| {
            (
                d["metadata"]["name"].as_str().unwrap().to_owned(),
                d["spec"]["scope"].as_str().unwrap().to_owned(),
                d["spec"]["versions"][0]["name"]
                    .as_str()
                    .unwrap()
                    .to_owned(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            (
                "releases.meridian.dev".into(),
                "Namespaced".into(),
                "v1alpha1".into()
            ),
            (
                "rollouts.meridian.dev".into(),
                "Cluster".into(),
                "v1alpha1".into()
            ),
        ]
    );
    for d in &docs {
        let v = &d["spec"]["versions"][0];
        assert_eq!(v["subresources"]["status"], serde_json::json!({}));
    }
    let release = &docs[0]["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"];
    let spec_props = release["spec"]["properties"].as_object().unwrap();
    for field in [
        "image",
        "replicas",
        "previewReplicas",
        "activeService",
        "previewService",
        "migration",
        "analysis",
        "autoPromote",
        "scaleDownDelaySeconds",
        "progressDeadlineSeconds",
        "rollbackPolicy",
        "paused",
        "abort",
        "resources",
    ] {
        assert!(spec_props.contains_key(field), "Release spec lacks {field}");
    }
    assert_eq!(
        release["spec"]["properties"]["rollbackPolicy"]["enum"],
        serde_json::json!(["Revert", "Freeze"])
    );
    // Pods get requests and a memory limit even when the Release says nothing about them.
    assert_eq!(
        release["spec"]["properties"]["resources"]["default"],
        serde_json::json!({
            "requests": { "cpu": "100m", "memory": "128Mi" },
            "limits": { "memory": "512Mi" },
        })
    );
    let probe = &release["spec"]["properties"]["analysis"]["properties"]["probe"]["properties"];
    assert_eq!(
        probe["bearerTokenSecret"]["required"],
        serde_json::json!(["name"])
    );
}

/// The README's example YAML must stay valid for the types it documents.
#[test]
fn readme_examples_parse_into_the_types() {
    let readme = include_str!("../README.md");
    let blocks: Vec<&str> = readme
        .split("```yaml\n")
        .skip(1)
        .map(|b| b.split("```").next().unwrap())
        .collect();
    let release = blocks
        .iter()
        .find(|b| b.contains("kind: Release"))
        .expect("README has a Release example");
    let release: operator::crd::Release = serde_saphyr::from_str(release).expect("Release example");
    assert_eq!(release.spec.migration.unwrap().timeout_seconds, 300);
    assert_eq!(
        release.spec.rollback_policy,
        operator::crd::RollbackPolicy::Revert
    );
    let rollout = blocks
        .iter()
        .find(|b| b.contains("kind: Rollout"))
        .expect("README has a Rollout example");
    let rollout: operator::crd::Rollout = serde_saphyr::from_str(rollout).expect("Rollout example");
    assert_eq!(rollout.spec.waves.len(), 3);
    assert_eq!(
        rollout.spec.halt_policy,
        operator::crd::HaltPolicy::RollbackWave
    );
}
