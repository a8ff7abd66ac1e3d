//! The Kubernetes objects the Release reconciler writes, as pure functions of the Release: the
//! Deployment of each colour, the migration Job, and the bodies of the Service-selector,
//! scale-down and status patches. No I/O here; [`super::reconcile`] sends what these build, and
//! the tests below check them without an API server.
//!
//! Every pod built here (both colours, the migration Job) runs as the images' non-root user with
//! the Kubernetes "restricted" security profile: no privilege escalation, every capability
//! dropped, the runtime's default seccomp profile and a read-only root filesystem. What the
//! services write goes to two size-capped `emptyDir`s: `/tmp`, and the XDG state directory
//! (`XDG_STATE_HOME`), where calls keeps its snapshot file, which so survives a container
//! restart in the same pod. Requests and limits come from `spec.resources`.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec};
use k8s_openapi::api::batch::v1::{Job, JobSpec};
use k8s_openapi::api::core::v1::{
    Capabilities, Container, ContainerPort, EmptyDirVolumeSource, EnvFromSource,
    EnvVar as K8sEnvVar, HTTPGetAction, PodSecurityContext, PodSpec, PodTemplateSpec, Probe,
    ResourceRequirements, SeccompProfile, SecretEnvSource, SecurityContext, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::{Resource, ResourceExt};
use serde_json::{Value, json};

use super::reconcile::MANAGER;
use super::state;
use crate::crd::{Colour, Release, ReleaseSpec, ReleaseStatus};

/// Labels the operator puts on (and selects) pods.
pub const RELEASE_LABEL: &str = "meridian.dev/release";
pub const COLOUR_LABEL: &str = "meridian.dev/colour";
/// uid and gid every pod runs as: the `nonroot` user of the distroless images (docker/Dockerfile,
/// `USER 65532:65532`).
pub const RUN_AS_USER: i64 = 65_532;
/// The writable `emptyDir`s (the root filesystem is read-only): scratch space, and the state
/// directory the services find through `XDG_STATE_HOME` (calls: its snapshot file).
pub const TMP_MOUNT: &str = "/tmp";
pub const STATE_MOUNT: &str = "/var/lib/meridian";
/// Size cap of each; a pod writing more is evicted rather than filling the node.
pub const SCRATCH_SIZE_LIMIT: &str = "128Mi";

/// The merge patch that points a Service at one colour of `release`.
pub fn selector_patch(release: &str, colour: Colour) -> Value {
    json!({ "spec": { "selector": {
        RELEASE_LABEL: release,
        COLOUR_LABEL: colour.as_str(),
    } } })
}

/// The merge patch that scales a colour's Deployment to zero.
pub fn scale_down_patch() -> Value {
    json!({ "spec": { "replicas": 0 } })
}

/// The server-side-apply body of the Release's status subresource.
pub fn status_patch(status: &ReleaseStatus) -> Value {
    json!({
        "apiVersion": "meridian.dev/v1alpha1",
        "kind": "Release",
        "status": status,
    })
}

/// The annotations the clusters' Prometheus scraper keeps a pod by (terraform/modules/observability,
/// `prometheus.io/scrape=true`): without them no service pod is scraped and every dashboard and
/// alert is empty. Port and path follow the same convention for scrapers that read them.
pub fn scrape_annotations(port: i32) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("prometheus.io/scrape".to_owned(), "true".to_owned()),
        ("prometheus.io/port".to_owned(), port.to_string()),
        ("prometheus.io/path".to_owned(), "/metrics".to_owned()),
    ])
}

fn owner_meta(release: &Release, name: String, labels: BTreeMap<String, String>) -> ObjectMeta {
    ObjectMeta {
        name: Some(name),
        namespace: release.namespace(),
        labels: Some(labels),
        owner_references: release.controller_owner_ref(&()).map(|o| vec![o]),
        ..ObjectMeta::default()
    }
}

fn env(spec: &ReleaseSpec) -> (Option<Vec<K8sEnvVar>>, Option<Vec<EnvFromSource>>) {
    let var = |name: &str, value: &str| K8sEnvVar {
        name: name.to_owned(),
        value: Some(value.to_owned()),
        ..K8sEnvVar::default()
    };
    // First, so that the spec's own env can still point it elsewhere (the last entry wins).
    let mut env = vec![var("XDG_STATE_HOME", STATE_MOUNT)];
    env.extend(spec.env.iter().map(|e| var(&e.name, &e.value)));
    let env_from = spec.env_from_secret.as_ref().map(|s| {
        vec![EnvFromSource {
            secret_ref: Some(SecretEnvSource {
                name: s.clone(),
                optional: Some(false),
            }),
            ..EnvFromSource::default()
        }]
    });
    (Some(env), env_from)
}

/// The pod-level half of the restricted profile: non-root uid/gid, default seccomp profile.
fn pod_security_context() -> PodSecurityContext {
    PodSecurityContext {
        run_as_non_root: Some(true),
        run_as_user: Some(RUN_AS_USER),
        run_as_group: Some(RUN_AS_USER),
        seccomp_profile: Some(SeccompProfile {
            type_: "RuntimeDefault".into(),
            localhost_profile: None,
        }),
        ..PodSecurityContext::default()
    }
}

/// The container-level half: no escalation, no capabilities, nothing written outside `/tmp`.
fn container_security_context() -> SecurityContext {
    SecurityContext {
        allow_privilege_escalation: Some(false),
        read_only_root_filesystem: Some(true),
        run_as_non_root: Some(true),
        capabilities: Some(Capabilities {
            add: None,
            drop: Some(vec!["ALL".into()]),
        }),
        ..SecurityContext::default()
    }
}

fn resources(spec: &ReleaseSpec) -> ResourceRequirements {
    let r = &spec.resources;
    let mut limits = BTreeMap::from([("memory".to_owned(), Quantity(r.limits.memory.clone()))]);
    if let Some(cpu) = &r.limits.cpu {
        limits.insert("cpu".to_owned(), Quantity(cpu.clone()));
    }
    ResourceRequirements {
        requests: Some(BTreeMap::from([
            ("cpu".to_owned(), Quantity(r.requests.cpu.clone())),
            ("memory".to_owned(), Quantity(r.requests.memory.clone())),
        ])),
        limits: Some(limits),
        ..ResourceRequirements::default()
    }
}

/// The writable volumes, by name and mount path.
const SCRATCH: [(&str, &str); 2] = [("tmp", TMP_MOUNT), ("state", STATE_MOUNT)];

fn scratch_volumes() -> Vec<Volume> {
    SCRATCH
        .iter()
        .map(|(name, _)| Volume {
            name: (*name).into(),
            empty_dir: Some(EmptyDirVolumeSource {
                medium: None,
                size_limit: Some(Quantity(SCRATCH_SIZE_LIMIT.into())),
            }),
            ..Volume::default()
        })
        .collect()
}

fn scratch_mounts() -> Vec<VolumeMount> {
    SCRATCH
        .iter()
        .map(|(name, path)| VolumeMount {
            name: (*name).into(),
            mount_path: (*path).into(),
            ..VolumeMount::default()
        })
        .collect()
}

fn labels(spec: &ReleaseSpec, release: &str, colour: Option<Colour>) -> BTreeMap<String, String> {
    let mut l = BTreeMap::from([
        ("app.kubernetes.io/name".to_owned(), spec.service.clone()),
        (
            "app.kubernetes.io/managed-by".to_owned(),
            MANAGER.to_owned(),
        ),
        (RELEASE_LABEL.to_owned(), release.to_owned()),
    ]);
    if let Some(c) = colour {
        l.insert(COLOUR_LABEL.to_owned(), c.as_str().to_owned());
    }
    l
}

/// The Deployment of one colour.
pub fn deployment(release: &Release, colour: Colour, image: &str, replicas: i32) -> Deployment {
    let name = release.name_any();
    let spec = &release.spec;
    let pod_labels = labels(spec, &name, Some(colour));
    let selector = BTreeMap::from([
        (RELEASE_LABEL.to_owned(), name.clone()),
        (COLOUR_LABEL.to_owned(), colour.as_str().to_owned()),
    ]);
    let (env, env_from) = env(spec);
    let http_probe = |path: &str| Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.to_owned()),
            port: IntOrString::Int(spec.container_port),
            ..HTTPGetAction::default()
        }),
        period_seconds: Some(5),
        ..Probe::default()
    };
    Deployment {
        metadata: owner_meta(
            release,
            state::deployment_name(&name, colour),
            pod_labels.clone(),
        ),
        spec: Some(DeploymentSpec {
            replicas: Some(replicas),
            selector: LabelSelector {
                match_labels: Some(selector),
                ..LabelSelector::default()
            },
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(pod_labels),
                    annotations: Some(scrape_annotations(spec.container_port)),
                    ..ObjectMeta::default()
                }),
                spec: Some(PodSpec {
                    service_account_name: spec.service_account_name.clone(),
                    // The services never call the Kubernetes API; IRSA mounts its own token.
                    automount_service_account_token: Some(false),
                    security_context: Some(pod_security_context()),
                    // Covers the services' bounded drain on SIGTERM (SHUTDOWN_GRACE_SECS, 20 s by default).
                    termination_grace_period_seconds: Some(30),
                    volumes: Some(scratch_volumes()),
                    containers: vec![Container {
                        name: spec.service.clone(),
                        image: Some(image.to_owned()),
                        ports: Some(vec![ContainerPort {
                            container_port: spec.container_port,
                            name: Some("http".into()),
                            ..ContainerPort::default()
                        }]),
                        env,
                        env_from,
                        readiness_probe: Some(http_probe("/readyz")),
                        liveness_probe: Some(http_probe("/healthz")),
                        resources: Some(resources(spec)),
                        security_context: Some(container_security_context()),
                        volume_mounts: Some(scratch_mounts()),
                        ..Container::default()
                    }],
                    ..PodSpec::default()
                }),
            },
            ..DeploymentSpec::default()
        }),
        status: None,
    }
}

/// The migration Job of one cycle.
pub fn migration_job(release: &Release, job_name: &str) -> Job {
    let spec = &release.spec;
    let migration = spec
        .migration
        .clone()
        .unwrap_or_else(|| crate::crd::MigrationSpec {
            image: None,
            command: vec![],
            args: vec![],
            timeout_seconds: 600,
            backoff_limit: 1,
            snapshot: None,
        });
    let (env, env_from) = env(spec);
    Job {
        metadata: owner_meta(
            release,
            job_name.to_owned(),
            labels(spec, &release.name_any(), None),
        ),
        spec: Some(JobSpec {
            backoff_limit: Some(migration.backoff_limit),
            active_deadline_seconds: Some(i64::from(migration.timeout_seconds)),
            // Kept a day for post-mortems, then garbage-collected.
            ttl_seconds_after_finished: Some(86_400),
            template: PodTemplateSpec {
                metadata: None,
                spec: Some(PodSpec {
                    restart_policy: Some("Never".into()),
                    service_account_name: spec.service_account_name.clone(),
                    automount_service_account_token: Some(false),
                    security_context: Some(pod_security_context()),
                    volumes: Some(scratch_volumes()),
                    containers: vec![Container {
                        name: "migrate".into(),
                        image: Some(migration.image.unwrap_or_else(|| spec.image.clone())),
                        command: Some(migration.command),
                        args: (!migration.args.is_empty()).then_some(migration.args),
                        env,
                        env_from,
                        resources: Some(resources(spec)),
                        security_context: Some(container_security_context()),
                        volume_mounts: Some(scratch_mounts()),
                        ..Container::default()
                    }],
                    ..PodSpec::default()
                }),
            },
            ..JobSpec::default()
        }),
        status: None,
    }
}

#[cfg(test)]
#[path = "manifests_tests.rs"]
mod tests;
