//! The Release controller's RBAC, generated from the namespaces it manages so that the watch
//! scope (`WATCH_NAMESPACES`) and the permissions can never disagree: `deploy/rbac.yaml` is this
//! module's output for the namespaces in `deploy/deployment.yaml`, and a test compares them.
//!
//! There is no ClusterRole for the Release controller. In each managed namespace one Role grants
//! exactly what the reconciler calls, verb by verb (see [`release_rules`]); the operator cannot
//! read or write anything in any other namespace. The Rollout controller (management cluster
//! only) has its own small file, `deploy/rbac-rollout.yaml`: Rollouts are cluster-scoped, and a
//! cluster-scoped resource can only be granted by a ClusterRole.

use k8s_openapi::api::core::v1::ServiceAccount;
use k8s_openapi::api::rbac::v1::{PolicyRule, Role, RoleBinding, RoleRef, Subject};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

/// Namespace the operator itself runs in.
pub const OPERATOR_NAMESPACE: &str = "meridian-system";
/// Its ServiceAccount, and the name of every Role and RoleBinding generated here.
pub const SERVICE_ACCOUNT: &str = "meridian-operator";
/// The Secret the Role lets the operator read by default: the probe's bearer token
/// (`spec.analysis.probe.bearerTokenSecret`).
pub const DEFAULT_PROBE_TOKEN_SECRET: &str = "slo-probe-token";

/// Checks and normalises a namespace list: each a DNS-1123 label, duplicates dropped, order
/// kept; at least one.
pub fn parse_namespaces(raw: &[String]) -> Result<Vec<String>, String> {
    let mut out: Vec<String> = Vec::new();
    for ns in raw.iter().map(|n| n.trim()).filter(|n| !n.is_empty()) {
        if !is_dns_label(ns) {
            return Err(format!(
                "namespace {:?} is not a DNS-1123 label (lower-case letters, digits, '-', at most 63)",
                ns.chars().take(64).collect::<String>()
            ));
        }
        if !out.iter().any(|n| n == ns) {
            out.push(ns.to_owned());
        }
    }
    if out.is_empty() {
        return Err("no namespaces given: the Release controller watches only the namespaces its Roles cover (--namespaces / WATCH_NAMESPACES)".into());
    }
    Ok(out)
}

/// Checks Secret names (DNS-1123 subdomains); empty entries are dropped, so `""` means none.
pub fn parse_secret_names(raw: &[String]) -> Result<Vec<String>, String> {
    let mut out: Vec<String> = Vec::new();
    for name in raw.iter().map(|n| n.trim()).filter(|n| !n.is_empty()) {
        if name.len() > 253 || !name.split('.').all(is_dns_label) {
            return Err(format!(
                "Secret name {:?} is not a DNS-1123 subdomain",
                name.chars().take(254).collect::<String>()
            ));
        }
        if !out.iter().any(|n| n == name) {
            out.push(name.to_owned());
        }
    }
    Ok(out)
}

fn is_dns_label(s: &str) -> bool {
    let bytes = s.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 63
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
        && bytes[0] != b'-'
        && bytes[bytes.len() - 1] != b'-'
}

fn rule(group: &str, resources: &[&str], verbs: &[&str]) -> PolicyRule {
    PolicyRule {
        api_groups: Some(vec![group.to_owned()]),
        resources: Some(resources.iter().map(|r| (*r).to_owned()).collect()),
        verbs: verbs.iter().map(|v| (*v).to_owned()).collect(),
        ..PolicyRule::default()
    }
}

/// What the Release reconciler does in a managed namespace, and nothing more.
pub fn release_rules(probe_token_secrets: &[String]) -> Vec<PolicyRule> {
    let mut rules = vec![
        // The controller's watch (list/watch), the finalizer (JSON patch).
        rule(
            "meridian.dev",
            &["releases"],
            &["get", "list", "watch", "patch"],
        ),
        // Status by server-side apply.
        rule("meridian.dev", &["releases/status"], &["patch"]),
        // Owner references with blockOwnerDeletion on the Deployments and Jobs it creates
        // (the OwnerReferencesPermissionEnforcement admission plugin checks this).
        rule("meridian.dev", &["releases/finalizers"], &["update"]),
        // Watched as owned objects, read while deploying, server-side applied (an apply that
        // creates the object is authorised as create), scaled down by merge patch.
        rule(
            "apps",
            &["deployments"],
            &["get", "list", "watch", "create", "patch"],
        ),
        // The migration Job: watched, read, created once per release, deleted on timeout/abort.
        rule(
            "batch",
            &["jobs"],
            &["get", "list", "watch", "create", "delete"],
        ),
        // The active Service read at every reconcile (its selector is the ground truth of what
        // serves); only the selectors of the active and preview Services written, by merge patch.
        rule("", &["services"], &["get", "patch"]),
        // One Event per transition; kube's recorder patches a repeated Event's series.
        rule("events.k8s.io", &["events"], &["create", "patch"]),
    ];
    if !probe_token_secrets.is_empty() {
        rules.push(PolicyRule {
            resource_names: Some(probe_token_secrets.to_vec()),
            ..rule("", &["secrets"], &["get"])
        });
    }
    rules
}

fn meta(name: &str, namespace: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_owned()),
        namespace: Some(namespace.to_owned()),
        labels: Some(
            [(
                "app.kubernetes.io/name".to_owned(),
                SERVICE_ACCOUNT.to_owned(),
            )]
            .into(),
        ),
        ..ObjectMeta::default()
    }
}

/// The RBAC YAML of the Release controller for `namespaces` (already checked with
/// [`parse_namespaces`]): its ServiceAccount, and a Role + RoleBinding in each namespace.
pub fn rbac_yaml(namespaces: &[String], probe_token_secrets: &[String]) -> String {
    fn doc<T: serde::Serialize>(out: &mut String, object: &T) {
        out.push_str("---\n");
        out.push_str(&serde_saphyr::to_string(object).expect("RBAC objects serialize to YAML"));
    }
    let mut secrets_flag = String::new();
    if probe_token_secrets.is_empty() {
        secrets_flag.push_str(" --probe-token-secret ''");
    }
    for s in probe_token_secrets {
        secrets_flag.push_str(" --probe-token-secret ");
        secrets_flag.push_str(s);
    }
    let mut out = format!(
        "# Generated: cargo run -p meridian-operator -- rbac --namespaces {}{secrets_flag}\n\
         # The namespaces are WATCH_NAMESPACES of deploy/deployment.yaml; a test fails when they\n\
         # and this file disagree. Do not edit by hand.\n",
        namespaces.join(",")
    );
    doc(
        &mut out,
        &ServiceAccount {
            metadata: meta(SERVICE_ACCOUNT, OPERATOR_NAMESPACE),
            ..ServiceAccount::default()
        },
    );
    for ns in namespaces {
        doc(
            &mut out,
            &Role {
                metadata: meta(SERVICE_ACCOUNT, ns),
                rules: Some(release_rules(probe_token_secrets)),
            },
        );
        doc(
            &mut out,
            &RoleBinding {
                metadata: meta(SERVICE_ACCOUNT, ns),
                role_ref: RoleRef {
                    api_group: "rbac.authorization.k8s.io".into(),
                    kind: "Role".into(),
                    name: SERVICE_ACCOUNT.into(),
                },
                subjects: Some(vec![Subject {
                    kind: "ServiceAccount".into(),
                    name: SERVICE_ACCOUNT.into(),
                    namespace: Some(OPERATOR_NAMESPACE.into()),
                    api_group: None,
                }]),
            },
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn namespaces_are_checked_and_deduplicated() {
        assert_eq!(
            parse_namespaces(&strings(&["meridian", " calls ", "meridian", ""])).unwrap(),
            strings(&["meridian", "calls"])
        );
        for bad in ["Meridian", "-x", "x-", "a_b", "a.b", &"a".repeat(64)] {
            assert!(parse_namespaces(&strings(&[bad])).is_err(), "{bad}");
        }
        assert!(
            parse_namespaces(&[])
                .unwrap_err()
                .contains("WATCH_NAMESPACES")
        );
        assert!(parse_namespaces(&strings(&[" "])).is_err());
        assert_eq!(
            parse_secret_names(&strings(&["slo-probe-token", "a.b", ""])).unwrap(),
            strings(&["slo-probe-token", "a.b"])
        );
        assert!(parse_secret_names(&strings(&[""])).unwrap().is_empty());
        assert!(parse_secret_names(&strings(&["Bad"])).is_err());
    }

    #[test]
    fn one_role_per_namespace_and_no_cluster_role() {
        let yaml = rbac_yaml(
            &strings(&["meridian", "calls"]),
            &strings(&[DEFAULT_PROBE_TOKEN_SECRET]),
        );
        let docs: Vec<serde_json::Value> = yaml
            .split("---\n")
            .skip(1)
            .map(|d| serde_saphyr::from_str(d).unwrap())
            .collect();
        let kinds: Vec<(&str, &str)> = docs
            .iter()
            .map(|d| {
                (
                    d["kind"].as_str().unwrap(),
                    d["metadata"]["namespace"].as_str().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            kinds,
            vec![
                ("ServiceAccount", "meridian-system"),
                ("Role", "meridian"),
                ("RoleBinding", "meridian"),
                ("Role", "calls"),
                ("RoleBinding", "calls"),
            ]
        );
        let secrets = docs[1]["rules"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["resources"][0] == "secrets")
            .unwrap();
        assert_eq!(secrets["verbs"], serde_json::json!(["get"]));
        assert_eq!(
            secrets["resourceNames"],
            serde_json::json!(["slo-probe-token"])
        );
        assert_eq!(docs[2]["subjects"][0]["namespace"], "meridian-system");
        assert_eq!(docs[2]["roleRef"]["kind"], "Role");
    }

    #[test]
    fn no_rule_grants_wildcards_or_every_secret() {
        for rule in release_rules(&strings(&["slo-probe-token"])) {
            let all = [
                rule.api_groups.clone().unwrap_or_default(),
                rule.resources.clone().unwrap_or_default(),
                rule.verbs.clone(),
            ];
            assert!(all.iter().flatten().all(|s| s != "*"), "{rule:?}");
            if rule.resources.as_deref() == Some(&["secrets".to_owned()]) {
                assert!(rule.resource_names.is_some(), "secrets only by name");
            }
        }
        let without = release_rules(&[]);
        assert!(
            without
                .iter()
                .all(|r| r.resources.as_deref() != Some(&["secrets".to_owned()]))
        );
    }
}
