//! The operator's RBAC must cover exactly the namespaces it watches, and no more than it uses.
//! `deploy/rbac.yaml` is generated from WATCH_NAMESPACES in `deploy/deployment.yaml` (the one
//! place that list lives); `deploy/rbac-rollout.yaml` is the management cluster's small
//! ClusterRole for the cluster-scoped Rollouts.

use serde_json::Value;

/// The YAML documents of a multi-document file (comment-only parts skipped).
fn docs(yaml: &str) -> Vec<Value> {
    let mut parts = vec![String::new()];
    for line in yaml.lines() {
        if line == "---" {
            parts.push(String::new());
        } else if let Some(part) = parts.last_mut() {
            part.push_str(line);
            part.push('\n');
        }
    }
    parts
        .iter()
        .filter(|d| {
            d.lines()
                .any(|l| !l.trim().is_empty() && !l.starts_with('#'))
        })
        .map(|d| serde_saphyr::from_str(d).expect("YAML parses"))
        .collect()
}

fn watch_namespaces() -> Vec<String> {
    let deployment = docs(include_str!("../deploy/deployment.yaml"))
        .into_iter()
        .find(|d| d["kind"] == "Deployment")
        .expect("deployment.yaml has the operator Deployment");
    let env = &deployment["spec"]["template"]["spec"]["containers"][0]["env"];
    let value = env
        .as_array()
        .expect("env list")
        .iter()
        .find(|e| e["name"] == "WATCH_NAMESPACES")
        .expect("the operator Deployment sets WATCH_NAMESPACES")["value"]
        .as_str()
        .expect("a plain value")
        .to_owned();
    operator::rbac::parse_namespaces(&value.split(',').map(str::to_owned).collect::<Vec<_>>())
        .expect("valid namespaces")
}

#[test]
fn checked_in_rbac_matches_the_watched_namespaces() {
    let namespaces = watch_namespaces();
    let generated = operator::rbac::rbac_yaml(
        &namespaces,
        &[operator::rbac::DEFAULT_PROBE_TOKEN_SECRET.to_owned()],
    );
    assert!(
        include_str!("../deploy/rbac.yaml") == generated,
        "operator/deploy/rbac.yaml is stale: run `cargo run -p meridian-operator -- rbac --namespaces {}> operator/deploy/rbac.yaml`",
        namespaces.join(",")
    );
    let docs = docs(&generated);
    let roles: Vec<&str> = docs
        .iter()
        .filter(|d| d["kind"] == "Role")
        .map(|d| d["metadata"]["namespace"].as_str().unwrap())
        .collect();
    assert_eq!(roles, namespaces, "one Role per watched namespace");
}

#[test]
fn the_release_controller_has_no_cluster_wide_grant() {
    for d in docs(include_str!("../deploy/rbac.yaml")) {
        let kind = d["kind"].as_str().unwrap();
        assert!(
            !kind.starts_with("Cluster"),
            "rbac.yaml must hold no {kind}"
        );
    }
}

#[test]
fn the_rollout_cluster_role_covers_only_rollouts() {
    let docs = docs(include_str!("../deploy/rbac-rollout.yaml"));
    let cluster_roles: Vec<&Value> = docs.iter().filter(|d| d["kind"] == "ClusterRole").collect();
    assert_eq!(cluster_roles.len(), 1);
    let rules = cluster_roles[0]["rules"].as_array().unwrap();
    let mut granted: Vec<(String, String)> = Vec::new();
    for rule in rules {
        assert_eq!(rule["apiGroups"], serde_json::json!(["meridian.dev"]));
        for resource in rule["resources"].as_array().unwrap() {
            for verb in rule["verbs"].as_array().unwrap() {
                granted.push((
                    resource.as_str().unwrap().to_owned(),
                    verb.as_str().unwrap().to_owned(),
                ));
            }
        }
    }
    let want: Vec<(String, String)> = [
        ("rollouts", "get"),
        ("rollouts", "list"),
        ("rollouts", "watch"),
        ("rollouts/status", "patch"),
    ]
    .iter()
    .map(|(r, v)| ((*r).to_owned(), (*v).to_owned()))
    .collect();
    assert_eq!(granted, want);
    // Every binding names a role defined in the same file and the operator's ServiceAccount.
    for b in docs
        .iter()
        .filter(|d| d["kind"].as_str().is_some_and(|k| k.ends_with("Binding")))
    {
        let role = &b["roleRef"];
        assert!(
            docs.iter().any(|d| d["kind"] == role["kind"]
                && d["metadata"]["name"] == role["name"]
                && d["metadata"]["namespace"] == b["metadata"]["namespace"]),
            "{b}"
        );
        assert_eq!(b["subjects"][0]["name"], "meridian-operator");
        assert_eq!(b["subjects"][0]["namespace"], "meridian-system");
    }
}
