//! Snapshot before migrate, end to end: the reconciler against the mocked API server of
//! `reconcile_tests` and a real RDS API (moto's server, started here; `kit::testing::Moto`),
//! through aws-sdk-rds ([`snapshot::Rds`]). Every assertion about RDS reads its state back
//! through the SDK, not through the operator's code.

use aws_sdk_rds::config::{Credentials, Region};

use super::*;
use crate::crd::{SnapshotSpec, SnapshotState};
use kit::testing::Moto;

const CLUSTER: &str = "se-aurora";

async fn rds(moto: &Moto) -> aws_sdk_rds::Client {
    let config = snapshot::sdk_config_loader()
        .endpoint_url(moto.endpoint())
        .region(Region::new("eu-north-1"))
        .credentials_provider(Credentials::new("test", "test", None, None, "moto"))
        .load()
        .await;
    aws_sdk_rds::Client::new(&config)
}

async fn create_cluster(rds: &aws_sdk_rds::Client) {
    rds.create_db_cluster()
        .db_cluster_identifier(CLUSTER)
        .engine("aurora-postgresql")
        .master_username("meridian")
        .master_user_password("not-a-real-password-1")
        .send()
        .await
        .unwrap_or_else(|e| {
            panic!(
                "CreateDBCluster on moto: {}",
                aws_sdk_rds::error::DisplayErrorContext(e)
            )
        });
}

async fn manual_snapshot(rds: &aws_sdk_rds::Client, name: &str) {
    rds.create_db_cluster_snapshot()
        .db_cluster_identifier(CLUSTER)
        .db_cluster_snapshot_identifier(name)
        .send()
        .await
        .unwrap_or_else(|e| {
            panic!(
                "snapshot {name}: {}",
                aws_sdk_rds::error::DisplayErrorContext(e)
            )
        });
}

/// Every manual snapshot of the cluster, by name, as RDS lists them.
async fn snapshot_names(rds: &aws_sdk_rds::Client) -> Vec<String> {
    let out = rds
        .describe_db_cluster_snapshots()
        .db_cluster_identifier(CLUSTER)
        .snapshot_type("manual")
        .send()
        .await
        .expect("DescribeDBClusterSnapshots");
    let mut names: Vec<String> = out
        .db_cluster_snapshots()
        .iter()
        .filter_map(|s| s.db_cluster_snapshot_identifier().map(str::to_owned))
        .collect();
    names.sort();
    names
}

fn ctx_on(client: aws_sdk_rds::Client) -> (Arc<Context>, ApiServerVerifier) {
    let (mock_service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let kube = Client::new(mock_service, "default");
    let ctx = Context {
        recorder: Recorder::new(kube.clone(), reporter()),
        client: kube,
        prober: Arc::new(|_, _| panic!("nothing is probed before the migration")),
        prometheus: Arc::new(|_, _| panic!("nothing is queried before the migration")),
        clock: Arc::new(now),
        snapshots: Arc::new(snapshot::Rds::with_client(client)),
    };
    (Arc::new(ctx), ApiServerVerifier(handle))
}

/// The release of v2 (blue serves v1), in `Pending`, with a snapshot of [`CLUSTER`].
fn pending_with_snapshot(retain: u32) -> Release {
    let mut release = Release::test().finalized().in_phase(Phase::Pending);
    release.spec.migration.as_mut().unwrap().snapshot = Some(SnapshotSpec {
        cluster_identifier: CLUSTER.into(),
        retain,
        timeout_seconds: 1800,
    });
    // in_phase hashed the spec before the snapshot was added: the hash covers the migration.
    release.status.as_mut().unwrap().preview_hash = Some(state::spec_hash(&release.spec));
    release
}

type Captured = Arc<std::sync::Mutex<Option<ReleaseStatus>>>;

/// A status apply that checks the status with `f` and keeps it for the next reconcile.
fn captured_apply(
    release: &Release,
    keep: &Captured,
    f: impl FnOnce(&ReleaseStatus) + Send + 'static,
) -> Expect {
    let keep = Arc::clone(keep);
    status_apply(release, move |s| {
        f(s);
        *keep.lock().unwrap() = Some(s.clone());
    })
}

fn with_status(mut release: Release, keep: &Captured) -> Release {
    release.status = Some(keep.lock().unwrap().take().expect("a status was applied"));
    release
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_snapshot_exists_and_is_recorded_before_the_migration_job_is_created() {
    let moto = Moto::start();
    let rds = rds(&moto).await;
    create_cluster(&rds).await;
    // Three older cycles of this service, one of another service whose name starts the same,
    // and one taken by hand: only the first kind is ever pruned.
    for old in [
        "meridian-streams-00000000a1-0000001",
        "meridian-streams-00000000a2-0000001",
        "meridian-streams-00000000a3-0000001",
    ] {
        manual_snapshot(&rds, old).await;
    }
    manual_snapshot(&rds, "meridian-streams-admin-00000000b1-0000001").await;
    manual_snapshot(&rds, "before-upgrade-by-hand").await;

    let release = pending_with_snapshot(2);
    let name = snapshot::snapshot_name("streams", &state::spec_hash(&release.spec), now());
    let keep = Captured::default();

    // 1: the snapshot is requested; no Job (an unlisted request would fail the reconcile).
    let (ctx, server) = ctx_on(rds.clone());
    let expected = name.clone();
    let mocksrv = server.run(vec![
        event("SnapshotRequested", "Normal"),
        captured_apply(&release, &keep, move |s| {
            assert_eq!(s.phase, Phase::Pending);
            let snap = s.snapshot.as_ref().expect("snapshot in status");
            assert_eq!(snap.name, expected);
            assert_eq!(snap.cluster_identifier, CLUSTER);
            assert_eq!(snap.state, SnapshotState::Creating);
            assert!(s.migration.is_none(), "no Job yet");
        }),
    ]);
    reconcile(Arc::new(release.clone()), ctx)
        .await
        .expect("reconcile 1");
    timeout_after_1s(mocksrv).await;
    let out = rds
        .describe_db_cluster_snapshots()
        .db_cluster_snapshot_identifier(&name)
        .send()
        .await
        .expect("the snapshot exists in RDS");
    let described = &out.db_cluster_snapshots()[0];
    assert_eq!(described.db_cluster_identifier(), Some(CLUSTER));
    assert_eq!(described.snapshot_type(), Some("manual"));
    let arn = described
        .db_cluster_snapshot_arn()
        .expect("an ARN")
        .to_owned();
    let tags: Vec<(String, String)> = rds
        .list_tags_for_resource()
        .resource_name(&arn)
        .send()
        .await
        .expect("ListTagsForResource")
        .tag_list()
        .iter()
        .map(|t| {
            (
                t.key().unwrap_or_default().to_owned(),
                t.value().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    assert!(
        tags.contains(&("meridian:release".into(), "default/streams".into())),
        "{tags:?}"
    );

    // 2: RDS says available: the ARN goes into the status, old cycles are pruned; still no Job.
    let release = with_status(release, &keep);
    let (ctx, server) = ctx_on(rds.clone());
    let expected_arn = arn.clone();
    let mocksrv = server.run(vec![
        event("SnapshotAvailable", "Normal"),
        captured_apply(&release, &keep, move |s| {
            assert_eq!(s.phase, Phase::Pending);
            let snap = s.snapshot.as_ref().unwrap();
            assert_eq!(snap.state, SnapshotState::Available);
            assert_eq!(snap.arn.as_deref(), Some(expected_arn.as_str()));
            assert!(s.migration.is_none(), "no Job yet");
            assert!(
                s.conditions
                    .iter()
                    .any(|c| c.type_ == state::SNAPSHOT_READY && c.status == "True")
            );
        }),
    ]);
    let action = reconcile(Arc::new(release.clone()), ctx)
        .await
        .expect("reconcile 2");
    assert_eq!(
        action,
        ControllerAction::requeue(state::SNAPSHOT_RECORDED_REQUEUE)
    );
    timeout_after_1s(mocksrv).await;
    let left = snapshot_names(&rds).await;
    let cycles: Vec<&String> = left
        .iter()
        .filter(|n| snapshot::is_cycle_snapshot("streams", n))
        .collect();
    assert_eq!(cycles.len(), 2, "retain 2: {left:?}");
    assert!(left.contains(&name), "this cycle's stays: {left:?}");
    assert!(
        left.contains(&"meridian-streams-admin-00000000b1-0000001".to_owned()),
        "{left:?}"
    );
    assert!(
        left.contains(&"before-upgrade-by-hand".to_owned()),
        "{left:?}"
    );

    // 3: now the Job, from a status that already holds the ARN.
    let release = with_status(release, &keep);
    assert_eq!(
        release
            .status
            .as_ref()
            .unwrap()
            .snapshot
            .as_ref()
            .unwrap()
            .arn
            .as_deref(),
        Some(arn.as_str())
    );
    let (ctx, server) = ctx_on(rds.clone());
    let job_name = state::migration_job_name("streams", &state::spec_hash(&release.spec));
    let expected_job = job_name.clone();
    let mocksrv = server.run(vec![
        Expect::new(Method::POST, "/apis/batch/v1/namespaces/default/jobs?").check(move |job| {
            assert_eq!(job["metadata"]["name"], expected_job.as_str());
        }),
        event("Migrating", "Normal"),
        status_apply(&release, move |s| {
            assert_eq!(s.phase, Phase::Migrating);
            assert_eq!(s.migration.as_ref().unwrap().job_name, job_name);
            assert_eq!(s.snapshot.as_ref().unwrap().state, SnapshotState::Available);
        }),
    ]);
    reconcile(Arc::new(release), ctx)
        .await
        .expect("reconcile 3");
    timeout_after_1s(mocksrv).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_rds_refuses_fails_the_release_with_a_reason_and_no_job() {
    let moto = Moto::start();
    let rds = rds(&moto).await;
    // No cluster: CreateDBClusterSnapshot answers DBClusterNotFoundFault.
    let release = pending_with_snapshot(5);
    let name = snapshot::snapshot_name("streams", &state::spec_hash(&release.spec), now());
    let keep = Captured::default();

    let (ctx, server) = ctx_on(rds.clone());
    let mocksrv = server.run(vec![
        event("SnapshotRequested", "Normal"),
        captured_apply(&release, &keep, |s| {
            let snap = s.snapshot.as_ref().unwrap();
            assert_eq!(snap.state, SnapshotState::Failed);
            let why = snap.message.as_deref().unwrap();
            assert!(why.contains("DBClusterNotFound"), "{why}");
        }),
    ]);
    reconcile(Arc::new(release.clone()), ctx)
        .await
        .expect("reconcile 1");
    timeout_after_1s(mocksrv).await;

    let release = with_status(release, &keep);
    let (ctx, server) = ctx_on(rds.clone());
    let mocksrv = server.run(vec![
        event("SnapshotFailed", "Warning"),
        status_apply(&release, |s| {
            assert_eq!(s.phase, Phase::Failed);
            let msg = s.message.as_deref().unwrap();
            assert!(msg.contains("DBClusterNotFound"), "{msg}");
            assert!(msg.contains("no migration ran"), "{msg}");
            let progressing = s
                .conditions
                .iter()
                .find(|c| c.type_ == "Progressing")
                .unwrap();
            assert_eq!(progressing.status, "False");
            assert_eq!(progressing.reason, "SnapshotFailed");
            assert!(s.migration.is_none(), "no Job");
        }),
    ]);
    reconcile(Arc::new(release.clone()), ctx)
        .await
        .expect("reconcile 2");
    timeout_after_1s(mocksrv).await;

    let err = rds
        .describe_db_cluster_snapshots()
        .db_cluster_snapshot_identifier(&name)
        .send()
        .await
        .expect_err("no snapshot was created");
    assert!(
        err.as_service_error()
            .is_some_and(aws_sdk_rds::operation::describe_db_cluster_snapshots::DescribeDBClusterSnapshotsError::is_db_cluster_snapshot_not_found_fault),
        "{}",
        aws_sdk_rds::error::DisplayErrorContext(&err)
    );
}
