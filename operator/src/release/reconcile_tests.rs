//! The reconciler against a mocked API server (`tower_test::mock::pair`), in the style of
//! kube-rs/controller-rs `src/fixtures.rs`: each scenario lists the exact requests one reconcile
//! must make, in order — method, path and query, and the parts of the body that matter — and
//! answers each as the API server would. A missing request times out; an extra one fails the
//! reconcile with a closed-service error.

use std::sync::Arc;
use std::time::Duration;

use http::{Method, Request, Response};
use k8s_openapi::api::batch::v1::{JobCondition, JobStatus};
use k8s_openapi::jiff::Timestamp;
use kube::client::Body;
use kube::{Client, Resource};
use serde_json::{Value, json};

use super::*;
use crate::crd::{
    AnalysisRun, AnalysisSpec, MigrationSpec, MigrationStatus, ProbeSpec, Resources, RollbackPolicy,
};

const NOW: &str = "2026-11-23T12:00:00Z";

fn now() -> Timestamp {
    NOW.parse().unwrap()
}

fn spec() -> ReleaseSpec {
    ReleaseSpec {
        service: "streams".into(),
        image: "registry/streams:v2".into(),
        replicas: 3,
        preview_replicas: Some(1),
        active_service: "streams".into(),
        preview_service: "streams-preview".into(),
        container_port: 8080,
        env: vec![],
        env_from_secret: Some("streams-db".into()),
        service_account_name: None,
        resources: Resources::default(),
        migration: Some(MigrationSpec {
            image: None,
            command: vec!["streams".into(), "migrate".into()],
            args: vec![],
            timeout_seconds: 300,
            backoff_limit: 1,
            snapshot: None,
        }),
        analysis: AnalysisSpec {
            probe: ProbeSpec {
                path: "/healthz".into(),
                port: 80,
                requests: 50,
                p99_ms: 300.0,
                max_error_rate: 0.01,
                concurrency: 4,
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
        scale_down_delay_seconds: 300,
        progress_deadline_seconds: 900,
        rollback_policy: RollbackPolicy::Revert,
        paused: false,
        abort: false,
    }
}

impl Release {
    /// A Release as the API server would hand it out (uid, generation, namespace).
    fn test() -> Self {
        let mut r = Release::new("streams", spec());
        r.meta_mut().namespace = Some("default".into());
        r.meta_mut().uid = Some("0b1e-uid".into());
        r.meta_mut().generation = Some(2);
        r
    }

    fn finalized(mut self) -> Self {
        self.meta_mut().finalizers = Some(vec![FINALIZER.into()]);
        self
    }

    fn needs_delete(mut self) -> Self {
        self.meta_mut().deletion_timestamp =
            Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(now()));
        self
    }

    /// Blue serves v1; the cycle releasing v2 on green is in `phase`.
    fn in_phase(mut self, phase: Phase) -> Self {
        let hash = state::spec_hash(&self.spec);
        self.status = Some(ReleaseStatus {
            phase,
            observed_generation: Some(2),
            active_colour: Some(Colour::Blue),
            active_hash: Some("0000000001".into()),
            active_image: Some("registry/streams:v1".into()),
            preview_colour: Some(Colour::Green),
            preview_hash: Some(hash.clone()),
            phase_since: Some(now()),
            progress_since: Some(now()),
            migration: (phase != Phase::Pending).then(|| MigrationStatus {
                job_name: state::migration_job_name("streams", &hash),
                state: if phase == Phase::Migrating {
                    JobState::Running
                } else {
                    JobState::Succeeded
                },
            }),
            ..ReleaseStatus::default()
        });
        self
    }

    fn with_analysis(mut self, passed: bool) -> Self {
        let status = self.status.as_mut().unwrap();
        status.analysis.push(AnalysisRun {
            hash: status.preview_hash.clone().unwrap(),
            at: now(),
            passed,
            requests: 50,
            p50_ms: 4.0,
            p99_ms: if passed { 20.0 } else { 800.0 },
            error_rate: 0.0,
            prometheus_value: None,
            message: if passed { "ok" } else { "p99 800ms > 300ms" }.into(),
            verification: false,
            error: false,
        });
        self
    }
}

type ApiServerHandle = tower_test::mock::Handle<Request<Body>, Response<Body>>;

/// One request the reconciler must make next.
struct Expect {
    method: Method,
    /// Path and query exactly as sent.
    uri: String,
    /// Checks on the JSON body (skipped for bodiless requests).
    check: Box<dyn FnOnce(&Value) + Send>,
    /// The response body; `None` echoes the request body back.
    respond: Option<Value>,
    status: u16,
}

impl Expect {
    fn new(method: Method, uri: &str) -> Self {
        Self {
            method,
            uri: uri.to_owned(),
            check: Box::new(|_| {}),
            respond: None,
            status: 200,
        }
    }
    fn check(mut self, f: impl FnOnce(&Value) + Send + 'static) -> Self {
        self.check = Box::new(f);
        self
    }
    fn respond(mut self, body: Value) -> Self {
        self.respond = Some(body);
        self
    }
    /// Answers with `status` and a metav1.Status body, as the API server does for errors.
    fn fail(mut self, status: u16, reason: &str) -> Self {
        self.status = status;
        self.respond = Some(json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "reason": reason, "message": format!("{reason} (from the test)"), "code": status,
        }));
        self
    }
}

fn event(reason: &'static str, type_: &'static str) -> Expect {
    Expect::new(
        Method::POST,
        "/apis/events.k8s.io/v1/namespaces/default/events?",
    )
    .check(move |body| {
        assert_eq!(body["reason"], reason, "event reason");
        assert_eq!(body["type"], type_, "event type");
        assert_eq!(body["regarding"]["kind"], "Release");
        assert_eq!(body["regarding"]["name"], "streams");
        assert_eq!(body["reportingController"], MANAGER);
    })
}

fn status_apply(release: &Release, f: impl FnOnce(&ReleaseStatus) + Send + 'static) -> Expect {
    let echo = serde_json::to_value(release).unwrap();
    Expect::new(
        Method::PATCH,
        "/apis/meridian.dev/v1alpha1/namespaces/default/releases/streams/status?&force=true&fieldManager=meridian-operator",
    )
    .check(move |body| {
        assert_eq!(body["apiVersion"], "meridian.dev/v1alpha1");
        assert_eq!(body["kind"], "Release");
        let status: ReleaseStatus = serde_json::from_value(body["status"].clone()).unwrap();
        assert_eq!(status.observed_generation, Some(2));
        f(&status);
    })
    .respond(echo)
}

fn selector_patch(service: &str, colour: &'static str) -> Expect {
    Expect::new(
        Method::PATCH,
        &format!("/api/v1/namespaces/default/services/{service}?"),
    )
    .check(move |body| {
        assert_eq!(
            body,
            &json!({ "spec": { "selector": {
                "meridian.dev/release": "streams",
                "meridian.dev/colour": colour,
            } } })
        );
    })
    .respond(json!({ "apiVersion": "v1", "kind": "Service", "metadata": { "name": service } }))
}

struct ApiServerVerifier(ApiServerHandle);

/// Every reconcile of a Release first reads its active Service.
const ACTIVE_SERVICE: &str = "/api/v1/namespaces/default/services/streams";
/// ... and lists the namespace's Releases (an older one may own its Services).
const RELEASES: &str = "/apis/meridian.dev/v1alpha1/namespaces/default/releases?";

/// The list of the namespace's Releases, answered with `items`.
fn release_list(items: &[Release]) -> Expect {
    Expect::new(Method::GET, RELEASES).respond(json!({
        "apiVersion": "meridian.dev/v1alpha1", "kind": "ReleaseList",
        "metadata": { "resourceVersion": "1" },
        "items": items,
    }))
}

/// The active Service's read, answered with a selector of `colour` (or none).
fn active_service(colour: Option<&str>) -> Expect {
    let selector = colour.map_or_else(
        || json!({ "app": "streams" }),
        |c| json!({ "meridian.dev/release": "streams", "meridian.dev/colour": c }),
    );
    Expect::new(Method::GET, ACTIVE_SERVICE).respond(json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": { "name": "streams", "namespace": "default" },
        "spec": { "selector": selector },
    }))
}

impl ApiServerVerifier {
    /// Answers `script` in order; the handle must be awaited (with [`timeout_after_1s`]). The
    /// read of the active Service and the list of Releases that start every reconcile, when
    /// `script` does not list them next, are answered with a Service that selects no colour yet
    /// (so the status decides) and an empty list; the tests about the selector as ground truth
    /// list the first with [`active_service`], those about claimed Services the second with
    /// [`release_list`].
    fn run(mut self, script: Vec<Expect>) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            for (i, expect) in script.into_iter().enumerate() {
                let (request, send) = loop {
                    let (request, send) = self.0.next_request().await.unwrap_or_else(|| {
                        panic!("request {i} ({} {}) never made", expect.method, expect.uri)
                    });
                    let uri = request.uri().to_string();
                    let implicit = request.method() == Method::GET
                        && [ACTIVE_SERVICE, RELEASES].contains(&uri.as_str())
                        && expect.uri != uri;
                    if !implicit {
                        break (request, send);
                    }
                    let body = if uri == RELEASES {
                        release_list(&[]).respond.unwrap()
                    } else {
                        active_service(None).respond.unwrap()
                    };
                    send.send_response(
                        Response::builder()
                            .body(Body::from(serde_json::to_vec(&body).unwrap()))
                            .unwrap(),
                    );
                };
                assert_eq!(request.method(), expect.method, "request {i} method");
                assert_eq!(request.uri().to_string(), expect.uri, "request {i} uri");
                let bytes = request.into_body().collect_bytes().await.unwrap();
                let body: Value = if bytes.is_empty() {
                    Value::Null
                } else {
                    serde_json::from_slice(&bytes).expect("JSON request body")
                };
                (expect.check)(&body);
                let response = expect.respond.unwrap_or(body);
                send.send_response(
                    Response::builder()
                        .status(expect.status)
                        .body(Body::from(serde_json::to_vec(&response).unwrap()))
                        .unwrap(),
                );
            }
        })
    }
}

async fn timeout_after_1s(handle: tokio::task::JoinHandle<()>) {
    tokio::time::timeout(Duration::from_secs(1), handle)
        .await
        .expect("timeout on mock apiserver")
        .expect("scenario succeeded");
}

/// A context on a mocked client, a fixed clock, and a probe that passes or breaches.
fn context(probe_passes: bool) -> (Arc<Context>, ApiServerVerifier) {
    let (ctx, server, _) = context_recording(probe_passes, 0.0);
    (ctx, server)
}

/// Like [`context`], with a Prometheus whose every query answers `prom_value` and must be the
/// preview colour's query.
fn context_with_prometheus(
    probe_passes: bool,
    prom_value: f64,
) -> (Arc<Context>, ApiServerVerifier) {
    let (ctx, server, _) = context_recording(probe_passes, prom_value);
    (ctx, server)
}

/// Every probe config the injected prober was called with.
type Probed = Arc<std::sync::Mutex<Vec<probe::ProbeConfig>>>;

const PREVIEW_URL: &str = "http://streams-preview.default.svc:80/healthz";
const ACTIVE_URL: &str = "http://streams.default.svc:80/healthz";

fn context_recording(
    probe_passes: bool,
    prom_value: f64,
) -> (Arc<Context>, ApiServerVerifier, Probed) {
    let (mock_service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let client = Client::new(mock_service, "default");
    let configs: Probed = Arc::default();
    let record = Arc::clone(&configs);
    let prober: Prober = Arc::new(move |config, thresholds| {
        record.lock().unwrap().push(config.clone());
        Box::pin(async move {
            // The preview Service before promotion, the active one while verifying.
            assert!(
                [PREVIEW_URL, ACTIVE_URL].contains(&config.url.as_str()),
                "{}",
                config.url
            );
            Ok(probe::judge(
                probe::Measurement {
                    requests: config.requests,
                    errors: 0,
                    http_errors: 0,
                    auth_errors: 0,
                    transport_errors: 0,
                    error_rate: 0.0,
                    p50_ms: 4.0,
                    p99_ms: if probe_passes { 20.0 } else { 800.0 },
                    max_ms: 900.0,
                    elapsed_ms: 100.0,
                },
                thresholds,
            ))
        })
    });
    let ctx = Context {
        recorder: Recorder::new(client.clone(), reporter()),
        client,
        prober,
        prometheus: Arc::new(move |address, query| {
            Box::pin(async move {
                assert_eq!(address, "http://prometheus.monitoring:9090");
                assert_eq!(query, "p99{colour=\"green\"}");
                Ok(prom_value)
            })
        }),
        clock: Arc::new(now),
        // No Release here takes a snapshot: an RDS that is never configured (snapshot_tests.rs
        // drives the snapshot path against moto).
        snapshots: Arc::new(snapshot::Rds::from_env()),
    };
    (Arc::new(ctx), ApiServerVerifier(handle), configs)
}

/// The restricted pod profile every pod the operator creates must carry.
fn assert_restricted(pod: &Value) {
    assert_eq!(
        pod["securityContext"],
        json!({
            "runAsNonRoot": true,
            "runAsUser": 65532,
            "runAsGroup": 65532,
            "seccompProfile": { "type": "RuntimeDefault" },
        }),
        "pod securityContext"
    );
    assert_eq!(pod["automountServiceAccountToken"], false);
    let containers = pod["containers"].as_array().unwrap();
    assert_eq!(containers.len(), 1);
    let c = &containers[0];
    assert_eq!(
        c["securityContext"],
        json!({
            "allowPrivilegeEscalation": false,
            "readOnlyRootFilesystem": true,
            "runAsNonRoot": true,
            "capabilities": { "drop": ["ALL"] },
        }),
        "container securityContext"
    );
    // The read-only root leaves /tmp and the state directory (the calls snapshot) writable, on
    // size-capped emptyDirs, and the services find the latter through XDG_STATE_HOME.
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
    assert_eq!(
        c["env"][0],
        json!({ "name": "XDG_STATE_HOME", "value": "/var/lib/meridian" })
    );
}

/// The spec's default requests and limits.
fn default_resources() -> Value {
    json!({
        "requests": { "cpu": "100m", "memory": "128Mi" },
        "limits": { "memory": "512Mi" },
    })
}

#[tokio::test]
async fn new_release_gets_the_finalizer_first() {
    let (ctx, server) = context(true);
    let release = Release::test();
    let finalized = serde_json::to_value(release.clone().finalized()).unwrap();
    let mocksrv = server.run(vec![
        Expect::new(
            Method::PATCH,
            "/apis/meridian.dev/v1alpha1/namespaces/default/releases/streams?",
        )
        .check(|body| {
            assert_eq!(
                body,
                &json!([
                    { "op": "test", "path": "/metadata/finalizers", "value": null },
                    { "op": "add", "path": "/metadata/finalizers", "value": [FINALIZER] }
                ])
            );
        })
        .respond(finalized),
    ]);
    reconcile(Arc::new(release), ctx).await.expect("reconciler");
    timeout_after_1s(mocksrv).await;
}

#[tokio::test]
async fn finalized_release_starts_a_cycle_with_event_and_status() {
    let (ctx, server) = context(true);
    let release = Release::test().finalized();
    let mocksrv = server.run(vec![
        event("ReleaseStarted", "Normal"),
        status_apply(&release, |s| {
            assert_eq!(s.phase, Phase::Pending);
            assert_eq!(
                s.preview_colour,
                Some(Colour::Blue),
                "first release goes to blue"
            );
            assert_eq!(s.progress_since, Some(now()));
        }),
    ]);
    reconcile(Arc::new(release), ctx).await.expect("reconciler");
    timeout_after_1s(mocksrv).await;
}

#[tokio::test]
async fn pending_release_creates_the_migration_job() {
    let (ctx, server) = context(true);
    let release = Release::test().finalized().in_phase(Phase::Pending);
    let job_name = state::migration_job_name("streams", &state::spec_hash(&release.spec));
    let expected_name = job_name.clone();
    let mocksrv = server.run(vec![
        Expect::new(Method::POST, "/apis/batch/v1/namespaces/default/jobs?").check(move |job| {
            assert_eq!(job["metadata"]["name"], expected_name.as_str());
            assert_eq!(job["metadata"]["ownerReferences"][0]["kind"], "Release");
            assert_eq!(job["metadata"]["ownerReferences"][0]["controller"], true);
            assert_eq!(job["spec"]["backoffLimit"], 1);
            assert_eq!(job["spec"]["activeDeadlineSeconds"], 300);
            let c = &job["spec"]["template"]["spec"]["containers"][0];
            assert_eq!(c["image"], "registry/streams:v2");
            assert_eq!(c["command"], json!(["streams", "migrate"]));
            assert_eq!(c["envFrom"][0]["secretRef"]["name"], "streams-db");
            assert_eq!(job["spec"]["template"]["spec"]["restartPolicy"], "Never");
            assert_restricted(&job["spec"]["template"]["spec"]);
            assert_eq!(c["resources"], default_resources());
        }),
        event("Migrating", "Normal"),
        status_apply(&release, move |s| {
            assert_eq!(s.phase, Phase::Migrating);
            assert_eq!(s.migration.as_ref().unwrap().job_name, job_name);
            assert_eq!(s.migration.as_ref().unwrap().state, JobState::Running);
        }),
    ]);
    reconcile(Arc::new(release), ctx).await.expect("reconciler");
    timeout_after_1s(mocksrv).await;
}

fn job_response(name: &str, succeeded: bool) -> Value {
    let mut job = Job::default();
    job.metadata.name = Some(name.to_owned());
    job.status = Some(if succeeded {
        JobStatus {
            succeeded: Some(1),
            ..JobStatus::default()
        }
    } else {
        JobStatus {
            failed: Some(2),
            conditions: Some(vec![JobCondition {
                type_: "Failed".into(),
                status: "True".into(),
                reason: Some("BackoffLimitExceeded".into()),
                ..JobCondition::default()
            }]),
            ..JobStatus::default()
        }
    });
    serde_json::to_value(job).unwrap()
}

#[tokio::test]
async fn finished_migration_deploys_the_preview_and_points_the_preview_service_at_it() {
    let (ctx, server) = context(true);
    let release = Release::test().finalized().in_phase(Phase::Migrating);
    let job_name = release
        .status
        .as_ref()
        .unwrap()
        .migration
        .as_ref()
        .unwrap()
        .job_name
        .clone();
    let mocksrv = server.run(vec![
        Expect::new(Method::GET, &format!("/apis/batch/v1/namespaces/default/jobs/{job_name}"))
            .respond(job_response(&job_name, true)),
        event("MigrationSucceeded", "Normal"),
        Expect::new(
            Method::PATCH,
            "/apis/apps/v1/namespaces/default/deployments/streams-green?&force=true&fieldManager=meridian-operator",
        )
        .check(|d| {
            assert_eq!(d["apiVersion"], "apps/v1");
            assert_eq!(d["kind"], "Deployment");
            assert_eq!(d["spec"]["replicas"], 1, "preview size");
            assert_eq!(
                d["spec"]["selector"]["matchLabels"],
                json!({ "meridian.dev/release": "streams", "meridian.dev/colour": "green" })
            );
            let c = &d["spec"]["template"]["spec"]["containers"][0];
            assert_eq!(c["image"], "registry/streams:v2");
            assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/readyz");
            assert_eq!(d["metadata"]["ownerReferences"][0]["uid"], "0b1e-uid");
            assert_restricted(&d["spec"]["template"]["spec"]);
            assert_eq!(c["resources"], default_resources());
        }),
        selector_patch("streams-preview", "green"),
        event("DeployingPreview", "Normal"),
        status_apply(&release, |s| {
            assert_eq!(s.phase, Phase::DeployingPreview);
            assert_eq!(s.migration.as_ref().unwrap().state, JobState::Succeeded);
            assert_eq!(s.active_colour, Some(Colour::Blue), "no traffic moved");
        }),
    ]);
    reconcile(Arc::new(release), ctx).await.expect("reconciler");
    timeout_after_1s(mocksrv).await;
}

#[tokio::test]
async fn failed_migration_touches_no_deployment_or_service() {
    let (ctx, server) = context(true);
    let release = Release::test().finalized().in_phase(Phase::Migrating);
    let job_name = release
        .status
        .as_ref()
        .unwrap()
        .migration
        .as_ref()
        .unwrap()
        .job_name
        .clone();
    let mocksrv = server.run(vec![
        Expect::new(
            Method::GET,
            &format!("/apis/batch/v1/namespaces/default/jobs/{job_name}"),
        )
        .respond(job_response(&job_name, false)),
        event("MigrationFailed", "Warning"),
        status_apply(&release, |s| {
            assert_eq!(s.phase, Phase::Failed);
            assert_eq!(s.migration.as_ref().unwrap().state, JobState::Failed);
        }),
    ]);
    reconcile(Arc::new(release), ctx).await.expect("reconciler");
    timeout_after_1s(mocksrv).await;
}

#[tokio::test]
async fn analysis_runs_the_probe_and_records_the_measurement() {
    let (ctx, server, probed) = context_recording(false, 0.0);
    let release = Release::test().finalized().in_phase(Phase::Analyzing);
    let mocksrv = server.run(vec![status_apply(&release, |s| {
        assert_eq!(s.phase, Phase::Analyzing);
        assert_eq!(s.analysis.len(), 1);
        let run = &s.analysis[0];
        assert!(!run.passed);
        assert!((run.p99_ms - 800.0).abs() < f64::EPSILON);
        assert_eq!(run.requests, 50);
        assert_eq!(run.at, now());
    })]);
    reconcile(Arc::new(release), ctx).await.expect("reconciler");
    timeout_after_1s(mocksrv).await;
    assert_eq!(probed.lock().unwrap()[0].url, PREVIEW_URL);
}

#[tokio::test]
async fn breach_points_active_back_at_the_old_colour_and_scales_the_preview_down() {
    let (ctx, server) = context(true);
    let release = Release::test()
        .finalized()
        .in_phase(Phase::Analyzing)
        .with_analysis(false);
    let mocksrv = server.run(vec![
        selector_patch("streams", "blue"),
        Expect::new(
            Method::PATCH,
            "/apis/apps/v1/namespaces/default/deployments/streams-green?",
        )
        .check(|body| assert_eq!(body, &json!({ "spec": { "replicas": 0 } })))
        .respond(json!({ "apiVersion": "apps/v1", "kind": "Deployment", "metadata": { "name": "streams-green" } })),
        event("AnalysisFailed", "Warning"),
        status_apply(&release, |s| {
            assert_eq!(s.phase, Phase::RollingBack);
            assert_eq!(s.active_colour, Some(Colour::Blue));
        }),
    ]);
    reconcile(Arc::new(release), ctx).await.expect("reconciler");
    timeout_after_1s(mocksrv).await;
}

fn ready_deployment(colour: &str, image: &str, ready: i32) -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": { "name": format!("streams-{colour}") },
        "spec": {
            "replicas": 3,
            "selector": { "matchLabels": { "meridian.dev/colour": colour } },
            "template": { "spec": { "containers": [ { "name": "streams", "image": image } ] } }
        },
        "status": { "replicas": 3, "updatedReplicas": 3, "readyReplicas": ready }
    })
}

#[tokio::test]
async fn promotion_switches_the_active_selector_once_the_preview_is_fully_ready() {
    let (ctx, server) = context(true);
    let release = Release::test()
        .finalized()
        .in_phase(Phase::Promoting)
        .with_analysis(true);
    let mocksrv = server.run(vec![
        Expect::new(
            Method::GET,
            "/apis/apps/v1/namespaces/default/deployments/streams-green",
        )
        .respond(ready_deployment("green", "registry/streams:v2", 3)),
        selector_patch("streams", "green"),
        event("Promoted", "Normal"),
        status_apply(&release, |s| {
            assert_eq!(s.phase, Phase::Succeeded);
            assert_eq!(s.active_colour, Some(Colour::Green));
            assert_eq!(s.active_image.as_deref(), Some("registry/streams:v2"));
            let p = s.pending_scale_down.as_ref().unwrap();
            assert_eq!(p.colour, Colour::Blue);
            assert_eq!(
                p.after,
                "2026-11-23T12:05:00Z".parse::<Timestamp>().unwrap()
            );
        }),
    ]);
    let action = reconcile(Arc::new(release), ctx).await.expect("reconciler");
    // The first verification measurement of green is one analysis interval away.
    assert_eq!(action, ControllerAction::requeue(Duration::from_mins(1)));
    timeout_after_1s(mocksrv).await;
}

/// Green (v2) was promoted and is being verified; blue (v1) still runs.
fn verifying(passed: bool) -> Release {
    let mut release = Release::test().finalized().in_phase(Phase::Succeeded);
    let status = release.status.as_mut().unwrap();
    status.active_colour = Some(Colour::Green);
    status.active_hash.clone_from(&status.preview_hash);
    status.active_image = Some("registry/streams:v2".into());
    status.pending_scale_down = Some(crate::crd::PendingScaleDown {
        colour: Colour::Blue,
        after: "2026-11-23T12:05:00Z".parse().unwrap(),
        hash: Some("0000000001".into()),
        image: Some("registry/streams:v1".into()),
    });
    status.analysis.push(AnalysisRun {
        hash: status.preview_hash.clone().unwrap(),
        at: now(),
        passed,
        requests: 50,
        p50_ms: 4.0,
        p99_ms: if passed { 20.0 } else { 800.0 },
        error_rate: 0.0,
        prometheus_value: None,
        message: if passed { "ok" } else { "p99 800ms > 300ms" }.into(),
        verification: true,
        error: false,
    });
    release
}

/// One interval after the last measurement, the promoted colour is measured through the active
/// Service and the measurement recorded; nothing else is written.
#[tokio::test]
async fn verification_measures_through_the_active_service_every_interval() {
    let (ctx, server, probed) = context_recording(true, 0.0);
    let mut release = verifying(true);
    let status = release.status.as_mut().unwrap();
    status.analysis[0].at = "2026-11-23T11:59:00Z".parse().unwrap();
    status.phase_since = Some("2026-11-23T11:58:00Z".parse().unwrap());
    let mocksrv = server.run(vec![status_apply(&release, |s| {
        assert_eq!(s.phase, Phase::Succeeded);
        let run = s.analysis.last().unwrap();
        assert!(run.verification && run.passed);
        assert_eq!(run.at, now());
        assert!(s.pending_scale_down.is_some(), "the old colour stays");
    })]);
    let action = reconcile(Arc::new(release), ctx).await.expect("reconciler");
    assert_eq!(action, ControllerAction::requeue(state::POLL));
    timeout_after_1s(mocksrv).await;
    assert_eq!(probed.lock().unwrap()[0].url, ACTIVE_URL);
}

#[tokio::test]
async fn a_failed_verification_points_the_active_service_back_at_the_old_colour() {
    let (ctx, server) = context(true);
    let release = verifying(false);
    let mocksrv = server.run(vec![
        selector_patch("streams", "blue"),
        Expect::new(
            Method::PATCH,
            "/apis/apps/v1/namespaces/default/deployments/streams-green?",
        )
        .check(|body| assert_eq!(body, &json!({ "spec": { "replicas": 0 } })))
        .respond(json!({ "apiVersion": "apps/v1", "kind": "Deployment", "metadata": { "name": "streams-green" } })),
        event("VerificationFailed", "Warning"),
        status_apply(&release, |s| {
            assert_eq!(s.phase, Phase::RollingBack);
            assert_eq!(s.active_colour, Some(Colour::Blue));
            assert_eq!(s.active_image.as_deref(), Some("registry/streams:v1"));
            assert_eq!(s.active_hash.as_deref(), Some("0000000001"));
            assert!(s.pending_scale_down.is_none());
            assert!(!s.verified);
        }),
    ]);
    reconcile(Arc::new(release), ctx).await.expect("reconciler");
    timeout_after_1s(mocksrv).await;
}

/// Ready counts from before the Deployment controller observed the latest spec describe the
/// previous one: such a colour is not ready, whatever they say.
#[tokio::test]
async fn a_deployment_whose_latest_generation_is_not_observed_yet_is_not_ready() {
    let (ctx, server) = context(true);
    let release = Release::test()
        .finalized()
        .in_phase(Phase::Promoting)
        .with_analysis(true);
    let mut stale = ready_deployment("green", "registry/streams:v2", 3);
    stale["metadata"]["generation"] = json!(3);
    stale["status"]["observedGeneration"] = json!(2);
    let mut current = stale.clone();
    current["status"]["observedGeneration"] = json!(3);
    let mocksrv = server.run(vec![
        Expect::new(
            Method::GET,
            "/apis/apps/v1/namespaces/default/deployments/streams-green",
        )
        .respond(stale),
    ]);
    let action = reconcile(Arc::new(release.clone()), ctx)
        .await
        .expect("reconciler");
    assert_eq!(action, ControllerAction::requeue(state::POLL));
    timeout_after_1s(mocksrv).await;

    // Once observed, the same counts promote.
    let (ctx, server) = context(true);
    let mocksrv = server.run(vec![
        Expect::new(
            Method::GET,
            "/apis/apps/v1/namespaces/default/deployments/streams-green",
        )
        .respond(current),
        selector_patch("streams", "green"),
        event("Promoted", "Normal"),
        status_apply(&release, |s| assert_eq!(s.phase, Phase::Succeeded)),
    ]);
    reconcile(Arc::new(release), ctx).await.expect("reconciler");
    timeout_after_1s(mocksrv).await;
}

#[tokio::test]
async fn partly_ready_preview_is_not_promoted_and_nothing_is_written() {
    let (ctx, server) = context(true);
    let release = Release::test()
        .finalized()
        .in_phase(Phase::Promoting)
        .with_analysis(true);
    let mocksrv = server.run(vec![
        Expect::new(
            Method::GET,
            "/apis/apps/v1/namespaces/default/deployments/streams-green",
        )
        .respond(ready_deployment("green", "registry/streams:v2", 2)),
    ]);
    let action = reconcile(Arc::new(release), ctx).await.expect("reconciler");
    assert_eq!(action, ControllerAction::requeue(state::POLL));
    timeout_after_1s(mocksrv).await;
}

#[tokio::test]
async fn deletion_restores_the_active_selector_then_drops_the_finalizer() {
    let (ctx, server) = context(true);
    let release = Release::test()
        .finalized()
        .in_phase(Phase::Analyzing)
        .needs_delete();
    let removed = {
        let mut r = release.clone();
        r.meta_mut().finalizers = None;
        serde_json::to_value(r).unwrap()
    };
    let mocksrv = server.run(vec![
        selector_patch("streams", "blue"),
        event("Deleted", "Normal"),
        Expect::new(
            Method::PATCH,
            "/apis/meridian.dev/v1alpha1/namespaces/default/releases/streams?",
        )
        .check(|body| {
            assert_eq!(
                body,
                &json!([
                    { "op": "test", "path": "/metadata/finalizers/0", "value": FINALIZER },
                    { "op": "remove", "path": "/metadata/finalizers/0" }
                ])
            );
        })
        .respond(removed),
    ]);
    reconcile(Arc::new(release), ctx).await.expect("reconciler");
    timeout_after_1s(mocksrv).await;
}

#[tokio::test]
async fn prometheus_check_over_its_maximum_fails_the_analysis() {
    let (ctx, server) = context_with_prometheus(true, 0.35);
    let mut release = Release::test().finalized().in_phase(Phase::Analyzing);
    release.spec.analysis.prometheus = Some(crate::crd::PrometheusCheck {
        address: "http://prometheus.monitoring:9090".into(),
        query: "p99{colour=\"{{colour}}\"}".into(),
        max_value: 0.3,
    });
    let mocksrv = server.run(vec![status_apply(&release, |s| {
        let run = &s.analysis[0];
        assert!(!run.passed, "probe passed but prometheus breached");
        assert_eq!(run.prometheus_value, Some(0.35));
        assert!(
            run.message.contains("prometheus 0.35 > 0.3"),
            "{}",
            run.message
        );
    })]);
    reconcile(Arc::new(release), ctx).await.expect("reconciler");
    timeout_after_1s(mocksrv).await;
}

/// A query with no data yet is a measurement error, not a failure: nothing is rolled back.
#[tokio::test]
async fn a_prometheus_query_without_data_is_an_error_not_a_failure() {
    let (ctx, server) = context(true);
    let mut ctx = Arc::try_unwrap(ctx).ok().expect("sole owner");
    ctx.prometheus = Arc::new(|_, _| Box::pin(async { Err("query returned no data".to_owned()) }));
    let mut release = Release::test().finalized().in_phase(Phase::Analyzing);
    release.spec.analysis.prometheus = Some(crate::crd::PrometheusCheck {
        address: "http://prometheus.monitoring:9090".into(),
        query: "p99{colour=\"{{colour}}\"}".into(),
        max_value: 0.3,
    });
    let mocksrv = server.run(vec![status_apply(&release, |s| {
        assert_eq!(s.phase, Phase::Analyzing);
        let run = &s.analysis[0];
        assert!(run.error && !run.passed, "{run:?}");
        assert!(run.message.contains("no data"), "{}", run.message);
        let m = s.measurements.as_ref().unwrap();
        assert_eq!(
            (m.count, m.failed, m.errors, m.consecutive_errors),
            (0, 0, 1, 1)
        );
    })]);
    reconcile(Arc::new(release), Arc::new(ctx))
        .await
        .expect("reconciler");
    timeout_after_1s(mocksrv).await;
}

/// Requests and limits set in the spec reach both the migration Job and the preview Deployment.
#[tokio::test]
async fn resources_from_the_spec_reach_the_job_and_the_deployment() {
    let custom = |mut r: Release| {
        r.spec.env = vec![crate::crd::EnvVar {
            name: "LOG_FORMAT".into(),
            value: "json".into(),
        }];
        r.spec.resources = Resources {
            requests: crate::crd::ResourceRequests {
                cpu: "1500m".into(),
                memory: "1Gi".into(),
            },
            limits: crate::crd::ResourceLimits {
                cpu: Some("2".into()),
                memory: "2Gi".into(),
            },
        };
        r
    };
    let want = json!({
        "requests": { "cpu": "1500m", "memory": "1Gi" },
        "limits": { "cpu": "2", "memory": "2Gi" },
    });

    let (ctx, server) = context(true);
    let release = custom(Release::test().finalized().in_phase(Phase::Pending));
    let want_job = want.clone();
    let mocksrv = server.run(vec![
        Expect::new(Method::POST, "/apis/batch/v1/namespaces/default/jobs?").check(move |job| {
            let pod = &job["spec"]["template"]["spec"];
            assert_restricted(pod);
            assert_eq!(pod["containers"][0]["resources"], want_job);
            // The spec's env follows the operator's, so it can override XDG_STATE_HOME.
            assert_eq!(
                pod["containers"][0]["env"],
                json!([
                    { "name": "XDG_STATE_HOME", "value": "/var/lib/meridian" },
                    { "name": "LOG_FORMAT", "value": "json" },
                ])
            );
        }),
        event("Migrating", "Normal"),
        status_apply(&release, |s| assert_eq!(s.phase, Phase::Migrating)),
    ]);
    reconcile(Arc::new(release), ctx).await.expect("reconciler");
    timeout_after_1s(mocksrv).await;

    // Deploying the preview with nothing there yet: the Deployment is applied again.
    let (ctx, server) = context(true);
    let release = custom(
        Release::test()
            .finalized()
            .in_phase(Phase::DeployingPreview),
    );
    let mocksrv = server.run(vec![
        Expect::new(
            Method::GET,
            "/apis/apps/v1/namespaces/default/deployments/streams-green",
        )
        .fail(404, "NotFound"),
        Expect::new(
            Method::PATCH,
            "/apis/apps/v1/namespaces/default/deployments/streams-green?&force=true&fieldManager=meridian-operator",
        )
        .check(move |d| {
            let pod = &d["spec"]["template"]["spec"];
            assert_restricted(pod);
            assert_eq!(pod["containers"][0]["resources"], want);
        }),
    ]);
    reconcile(Arc::new(release), ctx).await.expect("reconciler");
    timeout_after_1s(mocksrv).await;
}

const TOKEN: &str = "eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJzbG8tcHJvYmUifQ.c2ln";
/// `TOKEN` plus a trailing newline, base64 as a Secret's `data` holds it.
const TOKEN_B64: &str = "ZXlKaGJHY2lPaUpGWkVSVFFTSjkuZXlKemRXSWlPaUp6Ykc4dGNISnZZbVVpZlEuYzJsbgo=";
const SECRET_URI: &str = "/api/v1/namespaces/default/secrets/slo-probe-token";

/// A Release analysing with its probe token in the Secret `slo-probe-token`.
fn analysing_with_token_secret() -> Release {
    let mut release = Release::test().finalized().in_phase(Phase::Analyzing);
    release.spec.analysis.probe.bearer_token_secret = Some(crate::crd::SecretKeyRef {
        name: "slo-probe-token".into(),
        key: "token".into(),
    });
    release
}

fn secret(data: &Value) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": { "name": "slo-probe-token", "namespace": "default" },
        "data": data,
    })
}

#[tokio::test]
async fn analysis_reads_the_token_secret_and_probes_with_it() {
    let (ctx, server, probed) = context_recording(true, 0.0);
    let release = analysing_with_token_secret();
    let mocksrv = server.run(vec![
        Expect::new(Method::GET, SECRET_URI).respond(secret(&json!({ "token": TOKEN_B64 }))),
        status_apply(&release, |s| {
            assert_eq!(s.analysis.len(), 1);
            assert!(s.analysis[0].passed, "{}", s.analysis[0].message);
        }),
    ]);
    reconcile(Arc::new(release), ctx).await.expect("reconciler");
    timeout_after_1s(mocksrv).await;
    let probed = probed.lock().unwrap();
    assert_eq!(probed.len(), 1);
    assert_eq!(
        probed[0].bearer_token,
        Some(probe::BearerToken::new(TOKEN).unwrap())
    );
}

/// A token Secret that cannot be used fails the analysis (so the release rolls back next), the
/// probe never runs, and the status names the Secret but none of its content.
#[tokio::test]
async fn an_unusable_token_secret_fails_the_analysis_without_probing() {
    let cases = [
        (
            Expect::new(Method::GET, SECRET_URI).fail(404, "NotFound"),
            "probe token Secret slo-probe-token not found",
        ),
        (
            Expect::new(Method::GET, SECRET_URI).fail(403, "Forbidden"),
            "the operator may not read it",
        ),
        (
            Expect::new(Method::GET, SECRET_URI).respond(secret(&json!({ "other": TOKEN_B64 }))),
            "has no key token",
        ),
        (
            Expect::new(Method::GET, SECRET_URI)
                .respond(secret(&json!({ "token": "bm90IGEgdG9rZW4=" }))),
            "key token: the token has characters",
        ),
    ];
    for (get, why) in cases {
        let (ctx, server, probed) = context_recording(true, 0.0);
        let release = analysing_with_token_secret();
        let mocksrv = server.run(vec![
            get,
            status_apply(&release, move |s| {
                assert_eq!(s.analysis.len(), 1);
                let run = &s.analysis[0];
                assert!(!run.passed);
                assert!(run.message.contains(why), "{why}: {}", run.message);
                assert!(!run.message.contains("not a token"), "{}", run.message);
            }),
        ]);
        reconcile(Arc::new(release), ctx).await.expect("reconciler");
        timeout_after_1s(mocksrv).await;
        assert!(probed.lock().unwrap().is_empty(), "{why}: probed anyway");
    }
}

/// A transient API error reading the Secret is retried, not judged: no analysis is recorded.
#[tokio::test]
async fn a_transient_error_reading_the_token_secret_is_retried() {
    let (ctx, server, probed) = context_recording(true, 0.0);
    let release = analysing_with_token_secret();
    let mocksrv = server.run(vec![
        Expect::new(Method::GET, SECRET_URI).fail(500, "InternalError"),
    ]);
    let result = reconcile(Arc::new(release), ctx).await;
    assert!(result.is_err(), "{result:?}");
    timeout_after_1s(mocksrv).await;
    assert!(probed.lock().unwrap().is_empty());
}

/// A probe whose every request was refused (401/403) is a failed analysis, never a pass.
#[tokio::test]
async fn refused_probe_requests_fail_the_analysis() {
    let (mock_service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let client = Client::new(mock_service, "default");
    let ctx = Arc::new(Context {
        recorder: Recorder::new(client.clone(), reporter()),
        client,
        prober: Arc::new(|config, thresholds| {
            Box::pin(async move {
                Ok(probe::judge(
                    probe::Measurement {
                        requests: config.requests,
                        errors: config.requests,
                        http_errors: config.requests,
                        auth_errors: config.requests,
                        transport_errors: 0,
                        error_rate: 1.0,
                        p50_ms: 1.0,
                        p99_ms: 2.0,
                        max_ms: 2.0,
                        elapsed_ms: 10.0,
                    },
                    thresholds,
                ))
            })
        }),
        prometheus: Arc::new(|_, _| Box::pin(async { Ok(0.0) })),
        clock: Arc::new(now),
        snapshots: Arc::new(snapshot::Rds::from_env()),
    });
    let release = Release::test().finalized().in_phase(Phase::Analyzing);
    let mocksrv = ApiServerVerifier(handle).run(vec![status_apply(&release, |s| {
        let run = &s.analysis[0];
        assert!(!run.passed);
        assert!(
            run.message.contains("50 answered 401/403"),
            "{}",
            run.message
        );
    })]);
    reconcile(Arc::new(release), ctx).await.expect("reconciler");
    timeout_after_1s(mocksrv).await;
}

// ---------------------------------------------------------------- metrics
//
// Each scenario below runs one reconcile with a local recorder (`#[tokio::test]` runs on one
// thread, so the recorder sees everything the reconcile records) and reads the series back from
// the rendered text, as `/metrics` would serve them.

use crate::metrics::testing::sample;

fn with_recorder() -> metrics_exporter_prometheus::PrometheusRecorder {
    crate::metrics::recorder()
}

fn phase_series(phase: &str) -> String {
    format!(
        r#"meridian_release_phase{{namespace="default",release="streams",service="streams",phase="{phase}"}}"#
    )
}

const RELEASE_OK: &str = r#"meridian_operator_reconciles_total{controller="release",result="ok"}"#;
const RELEASE_ERROR: &str =
    r#"meridian_operator_reconciles_total{controller="release",result="error"}"#;
const SINCE: &str =
    r#"meridian_release_phase_since_timestamp_seconds{namespace="default",release="streams"}"#;

fn analysis_series(verdict: &str) -> String {
    format!(
        r#"meridian_release_analysis_total{{namespace="default",service="streams",verdict="{verdict}"}}"#
    )
}

#[tokio::test]
async fn a_promotion_exports_succeeded_as_the_only_current_phase() {
    let recorder = with_recorder();
    let _local = ::metrics::set_default_local_recorder(&recorder);
    let (ctx, server) = context(true);
    let mut release = Release::test()
        .finalized()
        .in_phase(Phase::Promoting)
        .with_analysis(true);
    // Promoting began an hour ago; promotion starts Succeeded now.
    release.status.as_mut().unwrap().phase_since = Some("2026-11-23T11:00:00Z".parse().unwrap());
    let mocksrv = server.run(vec![
        Expect::new(
            Method::GET,
            "/apis/apps/v1/namespaces/default/deployments/streams-green",
        )
        .respond(ready_deployment("green", "registry/streams:v2", 3)),
        selector_patch("streams", "green"),
        event("Promoted", "Normal"),
        status_apply(&release, |s| assert_eq!(s.phase, Phase::Succeeded)),
    ]);
    reconcile(Arc::new(release), ctx).await.expect("reconciler");
    timeout_after_1s(mocksrv).await;
    let text = recorder.handle().render();
    for phase in Phase::ALL {
        let want = if phase == Phase::Succeeded { 1.0 } else { 0.0 };
        assert_eq!(
            sample(&text, &phase_series(&phase.to_string())),
            Some(want),
            "{phase}\n{text}"
        );
    }
    assert_eq!(
        sample(&text, SINCE),
        Some(1_795_435_200.0),
        "phaseSince of Succeeded: now"
    );
    assert_eq!(sample(&text, RELEASE_OK), Some(1.0));
    assert_eq!(sample(&text, RELEASE_ERROR), None);
    assert_eq!(
        sample(
            &text,
            r#"meridian_operator_reconcile_duration_seconds_count{controller="release"}"#
        ),
        Some(1.0)
    );
}

#[tokio::test]
async fn a_breached_and_a_passed_analysis_are_counted_by_verdict() {
    let recorder = with_recorder();
    let _local = ::metrics::set_default_local_recorder(&recorder);
    for passes in [false, true] {
        let (ctx, server) = context(passes);
        let release = Release::test().finalized().in_phase(Phase::Analyzing);
        let mocksrv = server.run(vec![status_apply(&release, move |s| {
            assert_eq!(s.analysis[0].passed, passes);
        })]);
        reconcile(Arc::new(release), ctx).await.expect("reconciler");
        timeout_after_1s(mocksrv).await;
    }
    let text = recorder.handle().render();
    assert_eq!(
        sample(&text, &analysis_series("breached")),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, &analysis_series("passed")),
        Some(1.0),
        "{text}"
    );
    assert_eq!(sample(&text, &phase_series("Analyzing")), Some(1.0));
    assert_eq!(sample(&text, RELEASE_OK), Some(2.0));
}

/// An analysis that cannot run (the token Secret is missing) fails the preview like a breach
/// and is counted as one; no probe ran, but the analysis completed.
#[tokio::test]
async fn an_analysis_that_cannot_run_is_counted_as_breached() {
    let recorder = with_recorder();
    let _local = ::metrics::set_default_local_recorder(&recorder);
    let (ctx, server, _) = context_recording(true, 0.0);
    let release = analysing_with_token_secret();
    let mocksrv = server.run(vec![
        Expect::new(Method::GET, SECRET_URI).fail(404, "NotFound"),
        status_apply(&release, |s| assert!(!s.analysis[0].passed)),
    ]);
    reconcile(Arc::new(release), ctx).await.expect("reconciler");
    timeout_after_1s(mocksrv).await;
    let text = recorder.handle().render();
    assert_eq!(
        sample(&text, &analysis_series("breached")),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, &analysis_series("passed")),
        Some(0.0),
        "{text}"
    );
}

/// A failed reconcile counts as an error of its kind, still exports the phase the cluster holds,
/// and records no analysis verdict (nothing was judged).
#[tokio::test]
async fn a_failed_reconcile_counts_its_kind_and_keeps_the_observed_phase() {
    let recorder = with_recorder();
    let _local = ::metrics::set_default_local_recorder(&recorder);
    let (ctx, server, _) = context_recording(true, 0.0);
    let release = analysing_with_token_secret();
    let mocksrv = server.run(vec![
        Expect::new(Method::GET, SECRET_URI).fail(500, "InternalError"),
    ]);
    let err = reconcile(Arc::new(release), ctx).await.unwrap_err();
    assert_eq!(err.kind(), crate::metrics::ErrorKind::KubeApi, "{err}");
    timeout_after_1s(mocksrv).await;
    let text = recorder.handle().render();
    assert_eq!(sample(&text, RELEASE_ERROR), Some(1.0), "{text}");
    assert_eq!(sample(&text, RELEASE_OK), None);
    assert_eq!(
        sample(
            &text,
            r#"meridian_operator_reconcile_errors_total{controller="release",kind="kube_api"}"#
        ),
        Some(1.0)
    );
    assert_eq!(sample(&text, &phase_series("Analyzing")), Some(1.0));
    assert_eq!(sample(&text, SINCE), Some(1_795_435_200.0));
    assert_eq!(sample(&text, &analysis_series("breached")), Some(0.0));
}

/// Adding the finalizer fails: kind `finalizer`, not a plain API error.
#[tokio::test]
async fn a_failed_finalizer_patch_is_a_finalizer_error() {
    let recorder = with_recorder();
    let _local = ::metrics::set_default_local_recorder(&recorder);
    let (ctx, server) = context(true);
    let mocksrv = server.run(vec![
        Expect::new(
            Method::PATCH,
            "/apis/meridian.dev/v1alpha1/namespaces/default/releases/streams?",
        )
        .fail(500, "InternalError"),
    ]);
    let err = reconcile(Arc::new(Release::test()), ctx).await.unwrap_err();
    assert_eq!(err.kind(), crate::metrics::ErrorKind::Finalizer, "{err}");
    timeout_after_1s(mocksrv).await;
    let text = recorder.handle().render();
    assert_eq!(
        sample(
            &text,
            r#"meridian_operator_reconcile_errors_total{controller="release",kind="finalizer"}"#
        ),
        Some(1.0),
        "{text}"
    );
    assert!(
        !text.contains("meridian_release_phase"),
        "no status yet, no phase: {text}"
    );
}

#[tokio::test]
async fn deletion_zeroes_every_phase_of_the_release() {
    let recorder = with_recorder();
    let _local = ::metrics::set_default_local_recorder(&recorder);
    // As an earlier reconcile of the analysing Release left it.
    crate::metrics::release_phase(
        "default",
        "streams",
        "streams",
        Phase::Analyzing,
        Some(now()),
    );
    let before = recorder.handle().render();
    assert_eq!(sample(&before, &phase_series("Analyzing")), Some(1.0));

    let (ctx, server) = context(true);
    let deleted = Release::test()
        .finalized()
        .in_phase(Phase::Analyzing)
        .needs_delete();
    let removed = {
        let mut r = deleted.clone();
        r.meta_mut().finalizers = None;
        serde_json::to_value(r).unwrap()
    };
    let mocksrv = server.run(vec![
        selector_patch("streams", "blue"),
        event("Deleted", "Normal"),
        Expect::new(
            Method::PATCH,
            "/apis/meridian.dev/v1alpha1/namespaces/default/releases/streams?",
        )
        .respond(removed),
    ]);
    reconcile(Arc::new(deleted), ctx).await.expect("reconciler");
    timeout_after_1s(mocksrv).await;
    let text = recorder.handle().render();
    for phase in Phase::ALL {
        assert_eq!(
            sample(&text, &phase_series(&phase.to_string())),
            Some(0.0),
            "{phase}\n{text}"
        );
    }
    assert_eq!(sample(&text, RELEASE_OK), Some(1.0));
}

/// Status says green serves (v1) while the active Service selects blue (e.g. after a manual
/// rollback by selector patch), and v2 is pushed.
fn drifted() -> Release {
    let mut release = Release::test().finalized().in_phase(Phase::Succeeded);
    let status = release.status.as_mut().unwrap();
    status.active_colour = Some(Colour::Green);
    status.preview_colour = Some(Colour::Green);
    status.preview_hash = Some("0000000001".into());
    status.migration = None;
    status.verified = true;
    release
}

#[tokio::test]
async fn the_active_services_selector_wins_over_the_status_and_its_colour_is_never_written() {
    let (ctx, server) = context(true);
    let release = drifted();
    // Any request to streams-blue would be an extra request and fail the reconcile.
    let mocksrv = server.run(vec![
        active_service(Some("blue")),
        event("SelectorDrift", "Warning"),
        status_apply(&release, |s| {
            assert_eq!(s.active_colour, Some(Colour::Blue));
            assert_eq!(s.phase, Phase::Succeeded);
            assert_eq!(s.active_image, None, "what blue runs is not known");
        }),
    ]);
    reconcile(Arc::new(release.clone()), ctx)
        .await
        .expect("reconciler");
    timeout_after_1s(mocksrv).await;

    // The next reconcile releases v2 onto green, the colour that does not serve.
    let mut release = release;
    let status = release.status.as_mut().unwrap();
    status.active_colour = Some(Colour::Blue);
    status.active_hash = None;
    status.active_image = None;
    let (ctx, server) = context(true);
    let mocksrv = server.run(vec![
        active_service(Some("blue")),
        event("ReleaseStarted", "Normal"),
        status_apply(&release, |s| {
            assert_eq!(s.phase, Phase::Pending);
            assert_eq!(s.preview_colour, Some(Colour::Green));
        }),
    ]);
    reconcile(Arc::new(release), ctx).await.expect("reconciler");
    timeout_after_1s(mocksrv).await;
}

// ---------------------------------------------------------------- refusals, history, superseded Jobs

/// `v2`'s migration Job runs when spec.image changes to v3: the Job is read (Migrating), deleted
/// with propagationPolicy Background (its pods go too), and only then does v3's cycle start.
#[tokio::test]
async fn a_superseded_migration_job_is_deleted_in_the_background() {
    let (ctx, server) = context(true);
    let mut release = Release::test().finalized().in_phase(Phase::Migrating);
    let old_job = release
        .status
        .as_ref()
        .unwrap()
        .migration
        .as_ref()
        .unwrap()
        .job_name
        .clone();
    release.spec.image = "registry/streams:v3".into();
    let new_hash = state::spec_hash(&release.spec);
    let mut running = Job::default();
    running.metadata.name = Some(old_job.clone());
    running.status = Some(JobStatus::default());
    let mocksrv = server.run(vec![
        Expect::new(
            Method::GET,
            &format!("/apis/batch/v1/namespaces/default/jobs/{old_job}"),
        )
        .respond(serde_json::to_value(&running).unwrap()),
        Expect::new(
            Method::DELETE,
            &format!("/apis/batch/v1/namespaces/default/jobs/{old_job}?"),
        )
        .check(|body| assert_eq!(body["propagationPolicy"], "Background", "{body}"))
        .respond(serde_json::to_value(&running).unwrap()),
        event("MigrationSuperseded", "Normal"),
        event("ReleaseStarted", "Normal"),
        status_apply(&release, move |s| {
            assert_eq!(s.phase, Phase::Pending);
            assert_eq!(s.preview_hash.as_deref(), Some(new_hash.as_str()));
            assert!(s.migration.is_none());
        }),
    ]);
    reconcile(Arc::new(release), ctx).await.expect("reconciler");
    timeout_after_1s(mocksrv).await;
}

/// v1 was active before (status.history): the cycle back to it deploys the preview at once and
/// creates no migration Job (any POST to jobs would be an extra request and fail the reconcile).
#[tokio::test]
async fn a_cycle_back_to_a_previously_active_image_creates_no_migration_job() {
    let (ctx, server) = context(true);
    let mut release = Release::test().finalized();
    release.spec.image = "registry/streams:v1".into();
    let v1_hash = state::spec_hash(&release.spec);
    let mut release = release.in_phase(Phase::Pending);
    let status = release.status.as_mut().unwrap();
    // v2 serves on blue now; v1 was active before it.
    status.active_hash = Some("0000000002".into());
    status.active_image = Some("registry/streams:v2".into());
    status.history = vec![
        crate::crd::PastRelease {
            hash: v1_hash,
            image: "registry/streams:v1".into(),
        },
        crate::crd::PastRelease {
            hash: "0000000002".into(),
            image: "registry/streams:v2".into(),
        },
    ];
    let mocksrv = server.run(vec![
        event("MigrationSkipped", "Normal"),
        Expect::new(
            Method::PATCH,
            "/apis/apps/v1/namespaces/default/deployments/streams-green?&force=true&fieldManager=meridian-operator",
        )
        .check(|d| {
            let c = &d["spec"]["template"]["spec"]["containers"][0];
            assert_eq!(c["image"], "registry/streams:v1");
        }),
        selector_patch("streams-preview", "green"),
        event("DeployingPreview", "Normal"),
        status_apply(&release, |s| {
            assert_eq!(s.phase, Phase::DeployingPreview);
            assert!(s.migration.is_none(), "no Job recorded");
        }),
    ]);
    reconcile(Arc::new(release), ctx).await.expect("reconciler");
    timeout_after_1s(mocksrv).await;
}

fn created(mut r: Release, at: &str) -> Release {
    r.meta_mut().creation_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
        at.parse().unwrap(),
    ));
    r
}

/// Two Releases of the namespace name the Service `streams`: the older (`streams-old`) owns it.
/// The newer is refused — a condition, a Warning Event, a status write, and nothing written to
/// any Job, Deployment or Service (any such request would be extra and fail the reconcile); its
/// held series says why. The older one is reconciled as usual.
#[tokio::test]
async fn a_second_release_claiming_the_active_service_is_refused_and_writes_nothing() {
    let recorder = with_recorder();
    let _local = ::metrics::set_default_local_recorder(&recorder);
    let mut older = created(Release::test().finalized(), "2026-11-01T00:00:00Z");
    older.meta_mut().name = Some("streams-old".into());
    older.spec.preview_service = "streams-old-preview".into();
    let newer = created(Release::test().finalized(), "2026-11-20T00:00:00Z");
    let items = [older.clone(), newer.clone()];

    let (ctx, server) = context(true);
    let mocksrv = server.run(vec![
        release_list(&items),
        event("ServiceClaimed", "Warning"),
        status_apply(&newer, |s| {
            assert_eq!(s.phase, Phase::Pending);
            assert!(s.preview_hash.is_none(), "no cycle started");
            let c = s.conditions.iter().find(|c| c.type_ == "Accepted").unwrap();
            assert_eq!(
                (c.status.as_str(), c.reason.as_str()),
                ("False", "ServiceClaimed")
            );
            assert!(
                c.message
                    .contains("Service streams is claimed by Release streams-old"),
                "{}",
                c.message
            );
        }),
    ]);
    reconcile(Arc::new(newer), ctx).await.expect("reconciler");
    timeout_after_1s(mocksrv).await;
    let text = recorder.handle().render();
    let held = |reason: &str| {
        sample(
            &text,
            &format!(
                r#"meridian_release_held{{namespace="default",release="streams",service="streams",reason="{reason}"}}"#
            ),
        )
    };
    assert_eq!(held("ServiceClaimed"), Some(1.0), "{text}");
    assert_eq!(held("Inconclusive"), Some(0.0));

    // The older Release sees the newer one in the list and goes on.
    let (ctx, server) = context(true);
    let older_started = older.clone();
    let mocksrv = server.run(vec![
        release_list(&items),
        Expect::new(
            Method::POST,
            "/apis/events.k8s.io/v1/namespaces/default/events?",
        )
        .check(|body| assert_eq!(body["reason"], "ReleaseStarted")),
        Expect::new(
            Method::PATCH,
            "/apis/meridian.dev/v1alpha1/namespaces/default/releases/streams-old/status?&force=true&fieldManager=meridian-operator",
        )
        .check(|body| assert_eq!(body["status"]["phase"], "Pending"))
        .respond(serde_json::to_value(&older_started).unwrap()),
    ]);
    reconcile(Arc::new(older), ctx).await.expect("reconciler");
    timeout_after_1s(mocksrv).await;
}

/// The analysis (initialDelay + count x interval) does not fit in progressDeadlineSeconds: the
/// Release is refused before it migrates anything (no Job created).
#[tokio::test]
async fn a_release_whose_analysis_cannot_fit_its_deadline_is_refused_before_any_action() {
    let (ctx, server) = context(true);
    let mut release = Release::test().finalized();
    release.spec.analysis.count = 15; // 15 x 60 s = 900 s, plus 60 s initialDelay > 900 s
    release.spec.analysis.initial_delay = "1m".into();
    let mocksrv = server.run(vec![
        event("InvalidSpec", "Warning"),
        status_apply(&release, |s| {
            let c = s.conditions.iter().find(|c| c.type_ == "Accepted").unwrap();
            assert_eq!(
                (c.status.as_str(), c.reason.as_str()),
                ("False", "InvalidSpec")
            );
            assert!(
                c.message
                    .contains("= 960s, more than progressDeadlineSeconds 900"),
                "{}",
                c.message
            );
            assert!(s.preview_hash.is_none());
        }),
    ]);
    reconcile(Arc::new(release), ctx).await.expect("reconciler");
    timeout_after_1s(mocksrv).await;
}

/// After promotion, a verification held inconclusive is `Succeeded` — which the stuck alert
/// ignores — so it is exported as held (`reason="Inconclusive"`), which the held alert fires on.
#[tokio::test]
async fn an_inconclusive_hold_after_promotion_is_exported_as_held() {
    let recorder = with_recorder();
    let _local = ::metrics::set_default_local_recorder(&recorder);
    let (ctx, server) = context(true);
    let mut release = verifying(true);
    release.status.as_mut().unwrap().inconclusive = Some(crate::crd::Inconclusive {
        since: now(),
        generation: Some(2),
    });
    // Held: nothing is measured or written, only the two reads.
    let mocksrv = server.run(vec![release_list(&[]), active_service(None)]);
    reconcile(Arc::new(release), ctx).await.expect("reconciler");
    timeout_after_1s(mocksrv).await;
    let text = recorder.handle().render();
    assert_eq!(sample(&text, &phase_series("Succeeded")), Some(1.0));
    assert_eq!(
        sample(
            &text,
            r#"meridian_release_held{namespace="default",release="streams",service="streams",reason="Inconclusive"}"#
        ),
        Some(1.0),
        "{text}"
    );
}

/// A refused Release is deleted: the Service an older Release owns is not pointed at its colour
/// (any PATCH of the Service would be an extra request and fail the reconcile).
#[tokio::test]
async fn deleting_a_release_whose_service_is_claimed_leaves_the_selector_alone() {
    let (ctx, server) = context(true);
    let mut older = created(Release::test().finalized(), "2026-11-01T00:00:00Z");
    older.meta_mut().name = Some("streams-old".into());
    // It had served once (blue), before its spec named the older Release's Service.
    let deleted = created(
        Release::test().finalized().in_phase(Phase::Succeeded),
        "2026-11-20T00:00:00Z",
    )
    .needs_delete();
    let removed = {
        let mut r = deleted.clone();
        r.meta_mut().finalizers = None;
        serde_json::to_value(r).unwrap()
    };
    let mocksrv = server.run(vec![
        release_list(&[older, deleted.clone()]),
        event("Deleted", "Normal").check(|body| {
            assert_eq!(body["reason"], "Deleted");
            let note = body["note"].as_str().unwrap();
            assert!(note.contains("selector left as is"), "{note}");
            assert!(note.contains("streams-old"), "{note}");
        }),
        Expect::new(
            Method::PATCH,
            "/apis/meridian.dev/v1alpha1/namespaces/default/releases/streams?",
        )
        .respond(removed),
    ]);
    reconcile(Arc::new(deleted), ctx).await.expect("reconciler");
    timeout_after_1s(mocksrv).await;
}

/// An Event note over 1 kB would be refused, failing the reconcile before its status is written:
/// a long one is cut at a character boundary, marked, and never over the limit; a short one is
/// left alone.
#[test]
fn event_notes_are_cut_to_what_the_api_server_accepts() {
    assert_eq!(event_note("short"), "short");
    let exact = "x".repeat(EVENT_NOTE_MAX);
    assert_eq!(event_note(&exact), exact);
    // Four-byte characters straddle the limit: the cut must not split one.
    let long = format!("a{}", "🌍".repeat(600));
    let cut = event_note(&long);
    assert!(cut.len() <= EVENT_NOTE_MAX, "{} bytes", cut.len());
    assert!(cut.ends_with('…'));
    assert!(long.starts_with(cut.trim_end_matches('…')));
    assert!(
        cut.len() > EVENT_NOTE_MAX - 8,
        "cut far too short: {}",
        cut.len()
    );
}

// Snapshot before migrate against moto: the same mocked API server, a real RDS API.
#[path = "snapshot_tests.rs"]
mod snapshot_tests;
