//! The builders as pure functions: what each object says, without an API server. The reconcile
//! tests check the same objects again as the requests that carry them.

use kube::Resource;
use serde_json::{Value, json};

use super::*;
use crate::crd::{
    AnalysisSpec, EnvVar, MigrationSpec, ProbeSpec, ResourceLimits, ResourceRequests, Resources,
    RollbackPolicy,
};

fn release() -> Release {
    let mut r = Release::new(
        "calls",
        ReleaseSpec {
            service: "calls".into(),
            image: "registry/calls:v2".into(),
            replicas: 6,
            preview_replicas: Some(2),
            active_service: "calls".into(),
            preview_service: "calls-preview".into(),
            container_port: 8080,
            env: vec![EnvVar {
                name: "LOG_FORMAT".into(),
                value: "json".into(),
            }],
            env_from_secret: Some("calls-env".into()),
            service_account_name: Some("calls".into()),
            resources: Resources::default(),
            migration: Some(MigrationSpec {
                image: None,
                command: vec!["calls".into(), "migrate".into()],
                args: vec![],
                timeout_seconds: 300,
                backoff_limit: 1,
                snapshot: None,
            }),
            analysis: AnalysisSpec {
                probe: ProbeSpec {
                    path: "/readyz".into(),
                    port: 80,
                    requests: 500,
                    p99_ms: 50.0,
                    max_error_rate: 0.001,
                    concurrency: 8,
                    timeout_ms: 2000,
                    bearer_token_secret: None,
                },
                prometheus: None,
                interval: "60s".into(),
                count: 1,
                initial_delay: "0s".into(),
                failure_limit: 0,
                consecutive_error_limit: 4,
            },
            auto_promote: true,
            promote: None,
            scale_down_delay_seconds: 600,
            progress_deadline_seconds: 900,
            rollback_policy: RollbackPolicy::Revert,
            paused: false,
            abort: false,
        },
    );
    r.meta_mut().namespace = Some("meridian".into());
    r.meta_mut().uid = Some("c0ff-ee".into());
    r
}

fn to_json<T: serde::Serialize>(object: &T) -> Value {
    serde_json::to_value(object).unwrap()
}

#[test]
fn a_colour_deployment_is_owned_labelled_probed_and_restricted() {
    let d = to_json(&deployment(
        &release(),
        Colour::Green,
        "registry/calls:v2",
        2,
    ));
    assert_eq!(d["metadata"]["name"], "calls-green");
    assert_eq!(d["metadata"]["namespace"], "meridian");
    let owner = &d["metadata"]["ownerReferences"][0];
    assert_eq!(owner["kind"], "Release");
    assert_eq!(owner["uid"], "c0ff-ee");
    assert_eq!(owner["controller"], true);
    let labels = json!({
        "app.kubernetes.io/name": "calls",
        "app.kubernetes.io/managed-by": "meridian-operator",
        "meridian.dev/release": "calls",
        "meridian.dev/colour": "green",
    });
    assert_eq!(d["metadata"]["labels"], labels);
    assert_eq!(d["spec"]["template"]["metadata"]["labels"], labels);
    // Kept by the Prometheus scraper (terraform/modules/observability), on the container's port.
    let annotations = &d["spec"]["template"]["metadata"]["annotations"];
    assert_eq!(annotations["prometheus.io/scrape"], "true");
    assert_eq!(
        annotations["prometheus.io/port"],
        d["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"].to_string()
    );
    assert_eq!(d["spec"]["replicas"], 2);
    assert_eq!(
        d["spec"]["selector"],
        json!({ "matchLabels": { "meridian.dev/release": "calls", "meridian.dev/colour": "green" } })
    );
    let pod = &d["spec"]["template"]["spec"];
    assert_eq!(pod["serviceAccountName"], "calls");
    assert_eq!(pod["automountServiceAccountToken"], false);
    assert_eq!(pod["terminationGracePeriodSeconds"], 30);
    assert_eq!(
        pod["securityContext"],
        json!({
            "runAsNonRoot": true, "runAsUser": 65532, "runAsGroup": 65532,
            "seccompProfile": { "type": "RuntimeDefault" },
        })
    );
    let c = &pod["containers"][0];
    assert_eq!(c["name"], "calls");
    assert_eq!(c["image"], "registry/calls:v2");
    assert_eq!(
        c["ports"],
        json!([{ "containerPort": 8080, "name": "http" }])
    );
    for (probe, path) in [("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")] {
        assert_eq!(
            c[probe],
            json!({ "httpGet": { "path": path, "port": 8080 }, "periodSeconds": 5 })
        );
    }
    assert_eq!(
        c["env"],
        json!([
            { "name": "XDG_STATE_HOME", "value": "/var/lib/meridian" },
            { "name": "LOG_FORMAT", "value": "json" },
        ])
    );
    assert_eq!(
        c["envFrom"],
        json!([{ "secretRef": { "name": "calls-env", "optional": false } }])
    );
    assert_eq!(
        c["securityContext"],
        json!({
            "allowPrivilegeEscalation": false, "readOnlyRootFilesystem": true,
            "runAsNonRoot": true, "capabilities": { "drop": ["ALL"] },
        })
    );
    assert_eq!(
        pod["volumes"],
        json!([
            { "name": "tmp", "emptyDir": { "sizeLimit": "128Mi" } },
            { "name": "state", "emptyDir": { "sizeLimit": "128Mi" } },
        ])
    );
    assert_eq!(
        c["volumeMounts"],
        json!([
            { "name": "tmp", "mountPath": "/tmp" },
            { "name": "state", "mountPath": "/var/lib/meridian" },
        ])
    );
    assert!(d.get("status").is_none_or(Value::is_null));
}

#[test]
fn resources_default_without_a_cpu_limit_and_take_the_spec_when_given() {
    let d = to_json(&deployment(&release(), Colour::Blue, "i", 1));
    assert_eq!(
        d["spec"]["template"]["spec"]["containers"][0]["resources"],
        json!({ "requests": { "cpu": "100m", "memory": "128Mi" }, "limits": { "memory": "512Mi" } })
    );
    let mut r = release();
    r.spec.resources = Resources {
        requests: ResourceRequests {
            cpu: "250m".into(),
            memory: "256Mi".into(),
        },
        limits: ResourceLimits {
            cpu: Some("1".into()),
            memory: "1Gi".into(),
        },
    };
    let j = to_json(&migration_job(&r, "calls-migrate-x"));
    assert_eq!(
        j["spec"]["template"]["spec"]["containers"][0]["resources"],
        json!({ "requests": { "cpu": "250m", "memory": "256Mi" }, "limits": { "cpu": "1", "memory": "1Gi" } })
    );
}

#[test]
fn the_migration_job_runs_the_spec_command_once_with_a_deadline() {
    let j = to_json(&migration_job(&release(), "calls-migrate-abc"));
    assert_eq!(j["metadata"]["name"], "calls-migrate-abc");
    assert_eq!(j["metadata"]["ownerReferences"][0]["kind"], "Release");
    assert!(j["metadata"]["labels"].get("meridian.dev/colour").is_none());
    assert_eq!(j["spec"]["backoffLimit"], 1);
    assert_eq!(j["spec"]["activeDeadlineSeconds"], 300);
    assert_eq!(j["spec"]["ttlSecondsAfterFinished"], 86_400);
    let pod = &j["spec"]["template"]["spec"];
    assert_eq!(pod["restartPolicy"], "Never");
    assert_eq!(pod["automountServiceAccountToken"], false);
    let c = &pod["containers"][0];
    assert_eq!(c["name"], "migrate");
    assert_eq!(c["image"], "registry/calls:v2", "defaults to spec.image");
    assert_eq!(c["command"], json!(["calls", "migrate"]));
    assert!(c.get("args").is_none(), "no empty args");
    assert!(c.get("readinessProbe").is_none());

    let mut r = release();
    let m = r.spec.migration.as_mut().unwrap();
    m.image = Some("registry/calls-migrator:v2".into());
    m.args = vec!["--verbose".into()];
    let c = to_json(&migration_job(&r, "j"))["spec"]["template"]["spec"]["containers"][0].clone();
    assert_eq!(c["image"], "registry/calls-migrator:v2");
    assert_eq!(c["args"], json!(["--verbose"]));

    r.spec.migration = None;
    let j = to_json(&migration_job(&r, "j"));
    assert_eq!(j["spec"]["activeDeadlineSeconds"], 600, "default timeout");
}

#[test]
fn patches_name_the_release_and_colour() {
    assert_eq!(
        selector_patch("calls", Colour::Blue),
        json!({ "spec": { "selector": { "meridian.dev/release": "calls", "meridian.dev/colour": "blue" } } })
    );
    assert_eq!(scale_down_patch(), json!({ "spec": { "replicas": 0 } }));
    let status = ReleaseStatus {
        phase: crate::crd::Phase::Analyzing,
        ..ReleaseStatus::default()
    };
    let patch = status_patch(&status);
    assert_eq!(patch["apiVersion"], "meridian.dev/v1alpha1");
    assert_eq!(patch["kind"], "Release");
    assert_eq!(patch["status"]["phase"], "Analyzing");
}
