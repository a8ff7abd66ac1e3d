//! Snapshot before migrate: a manual Aurora cluster snapshot per release cycle, taken before the
//! migration Job is created (`spec.migration.snapshot`), so a destructive migration that slipped
//! through review has a restore point (runbooks/procedures/restore-from-snapshot.md).
//!
//! The state machine ([`super::state`]) decides when to request, wait and prune; this module
//! names the snapshots, picks which old ones go, and holds the RDS calls behind [`Snapshots`]
//! so the state machine's tests stay pure. The operator's implementation is [`Rds`] (aws-sdk-rds
//! through the ring-based HTTPS client, credentials from the pod's IAM role); its tests run it
//! against moto (`snapshot_tests.rs`).

use std::future::Future;
use std::pin::Pin;

use aws_sdk_rds::error::ProvideErrorMetadata;
use k8s_openapi::jiff::Timestamp;

/// Prefix of every snapshot the operator takes (and the only ones it ever deletes).
pub const PREFIX: &str = "meridian-";

/// Width of the request stamp: base36 seconds since the epoch, zero-padded (7 digits last
/// until the year 4400).
const STAMP_DIGITS: usize = 7;

/// The snapshot of one release cycle: `meridian-<service>-<spec hash>-<stamp>`, a valid RDS
/// identifier (letters, digits and single hyphens, starting with a letter, at most 63
/// characters, no trailing hyphen). The service part is lower-cased, anything but a letter or
/// digit becomes one hyphen, and it is cut to fit. The hash (10 hex digits) names what is
/// released; the stamp (`requested_at` in base36 seconds) makes every request its own: the same
/// spec released again later (after a failed cycle, or once it left the history) gets a new
/// snapshot rather than finding the old one "already existing" and taking a days-old restore
/// point for a fresh one.
pub fn snapshot_name(service: &str, hash: &str, requested_at: Timestamp) -> String {
    let mut svc = String::new();
    for c in service.chars() {
        if c.is_ascii_alphanumeric() {
            svc.push(c.to_ascii_lowercase());
        } else if !svc.is_empty() && !svc.ends_with('-') {
            svc.push('-');
        }
    }
    // 63 = "meridian-" (9) + service + "-" + hash + "-" + stamp.
    let room = 63usize.saturating_sub(PREFIX.len() + 1 + hash.len() + 1 + STAMP_DIGITS);
    svc.truncate(room);
    let svc = svc.trim_end_matches('-');
    let svc = if svc.is_empty() { "release" } else { svc };
    format!("{PREFIX}{svc}-{hash}-{}", stamp(requested_at))
}

fn stamp(at: Timestamp) -> String {
    let mut n = u64::try_from(at.as_second()).unwrap_or(0);
    let mut digits = [b'0'; STAMP_DIGITS];
    for d in digits.iter_mut().rev() {
        *d = b"0123456789abcdefghijklmnopqrstuvwxyz"[usize::try_from(n % 36).unwrap_or(0)];
        n /= 36;
    }
    String::from_utf8_lossy(&digits).into_owned()
}

/// Whether `name` is one of `service`'s cycle snapshots: exactly `meridian-<service>-`, a
/// 10-hex-digit hash, `-` and a stamp, so service `calls` never prunes `meridian-calls-admin-…`.
pub fn is_cycle_snapshot(service: &str, name: &str) -> bool {
    // The prefix as snapshot_name cuts it for a 10-digit hash.
    let own = snapshot_name(service, "0000000000", Timestamp::UNIX_EPOCH);
    let prefix = &own[..own.len() - 10 - 1 - STAMP_DIGITS];
    name.strip_prefix(prefix).is_some_and(|rest| {
        let lower = |b: u8| b.is_ascii_digit() || b.is_ascii_lowercase();
        let b = rest.as_bytes();
        b.len() == 10 + 1 + STAMP_DIGITS
            && b[..10].iter().all(|&c| c.is_ascii_hexdigit() && lower(c))
            && b[10] == b'-'
            && b[11..].iter().all(|&c| lower(c))
    })
}

/// Whether `name` is this cycle's snapshot: `service`'s, of spec `hash` (any request stamp).
pub fn is_snapshot_of(service: &str, hash: &str, name: &str) -> bool {
    is_cycle_snapshot(service, name)
        && name.len() > 1 + STAMP_DIGITS
        && name[..name.len() - 1 - STAMP_DIGITS].ends_with(&format!("-{hash}"))
}

/// One manual cluster snapshot, as RDS describes it.
#[derive(Debug, Clone, PartialEq)]
pub struct SnapshotInfo {
    pub name: String,
    /// RDS's status: `creating`, `available`, `failed`, `deleting`, ...
    pub status: String,
    pub arn: Option<String>,
    pub percent_progress: Option<i32>,
    /// `SnapshotCreateTime`, seconds since the epoch.
    pub created_secs: Option<i64>,
}

/// The `service` cycle snapshots beyond the newest `retain` (by creation time), oldest last;
/// `current` (this cycle's) is never among them, and neither is one still `creating`.
pub fn to_prune(
    service: &str,
    current: &str,
    snapshots: &[SnapshotInfo],
    retain: u32,
) -> Vec<String> {
    let mut own: Vec<&SnapshotInfo> = snapshots
        .iter()
        .filter(|s| is_cycle_snapshot(service, &s.name))
        .collect();
    // Newest first; the current one first of all whatever RDS says its time is.
    own.sort_by_key(|s| {
        (
            s.name != current,
            std::cmp::Reverse(s.created_secs.unwrap_or(i64::MIN)),
        )
    });
    own.into_iter()
        .skip(usize::try_from(retain.max(1)).unwrap_or(usize::MAX))
        .filter(|s| s.name != current && s.status != "creating")
        .map(|s| s.name.clone())
        .collect()
}

/// Why an RDS call did not do what was asked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SnapshotError {
    /// RDS answered with an error (no such cluster, quota, access denied, cluster not
    /// available): the release fails.
    #[error("{0}")]
    Refused(String),
    /// RDS could not be asked (network, throttling, no credentials): tried again, within the
    /// snapshot's timeout.
    #[error("{0}")]
    Transient(String),
}

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The RDS calls snapshot-before-migrate makes.
pub trait Snapshots: Send + Sync {
    /// `CreateDBClusterSnapshot` of `cluster` named `name` with `tags`; one that exists
    /// already (a request whose status write was lost) is fine.
    fn create<'a>(
        &'a self,
        cluster: &'a str,
        name: &'a str,
        tags: &'a [(String, String)],
    ) -> BoxFuture<'a, Result<(), SnapshotError>>;
    /// `DescribeDBClusterSnapshots` of one snapshot; `None` when there is no such snapshot.
    fn describe<'a>(
        &'a self,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Option<SnapshotInfo>, SnapshotError>>;
    /// Every manual snapshot of `cluster`.
    fn list_manual<'a>(
        &'a self,
        cluster: &'a str,
    ) -> BoxFuture<'a, Result<Vec<SnapshotInfo>, SnapshotError>>;
    /// `DeleteDBClusterSnapshot`; one already gone is fine.
    fn delete<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<(), SnapshotError>>;
}

/// [`Snapshots`] through aws-sdk-rds. The SDK configuration (region, the pod's IAM role,
/// `AWS_ENDPOINT_URL`) is loaded at the first call, so an operator whose Releases take no
/// snapshot never needs AWS settings.
pub struct Rds {
    client: tokio::sync::OnceCell<aws_sdk_rds::Client>,
}

impl Rds {
    /// Loads its configuration from the environment at first use.
    pub fn from_env() -> Self {
        Self {
            client: tokio::sync::OnceCell::new(),
        }
    }

    /// Uses `client` (tests: one pointed at moto).
    pub fn with_client(client: aws_sdk_rds::Client) -> Self {
        Self {
            client: tokio::sync::OnceCell::new_with(Some(client)),
        }
    }

    async fn client(&self) -> &aws_sdk_rds::Client {
        self.client
            .get_or_init(|| async {
                let config = sdk_config_loader().load().await;
                aws_sdk_rds::Client::new(&config)
            })
            .await
    }
}

/// The AWS configuration loader with the SDK's HTTPS client on rustls with ring, the
/// operator's one `CryptoProvider` (kube and the probe use ring too); the SDK's default client
/// would compile aws-lc-rs in as a second one.
pub fn sdk_config_loader() -> aws_config::ConfigLoader {
    use aws_smithy_http_client::tls;
    let https = aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(
            tls::rustls_provider::CryptoMode::Ring,
        ))
        .build_https();
    aws_config::defaults(aws_config::BehaviorVersion::latest()).http_client(https)
}

/// A service error (RDS answered) is a refusal; anything else (no answer) is transient.
fn classify<E, R>(op: &str, err: &aws_sdk_rds::error::SdkError<E, R>) -> SnapshotError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    match err.as_service_error() {
        Some(e) => {
            let code = e.code().unwrap_or("error");
            let message = format!("{op}: {code}: {}", e.message().unwrap_or("(no message)"));
            // Throttling is RDS saying "not now", not "no".
            if matches!(
                code,
                "Throttling" | "ThrottlingException" | "RequestLimitExceeded"
            ) {
                SnapshotError::Transient(message)
            } else {
                SnapshotError::Refused(message)
            }
        }
        None => SnapshotError::Transient(format!(
            "{op}: {}",
            aws_sdk_rds::error::DisplayErrorContext(err)
        )),
    }
}

fn info(s: &aws_sdk_rds::types::DbClusterSnapshot) -> SnapshotInfo {
    SnapshotInfo {
        name: s
            .db_cluster_snapshot_identifier()
            .unwrap_or_default()
            .to_owned(),
        status: s.status().unwrap_or_default().to_owned(),
        arn: s.db_cluster_snapshot_arn().map(str::to_owned),
        percent_progress: s.percent_progress(),
        created_secs: s
            .snapshot_create_time()
            .map(aws_sdk_rds::primitives::DateTime::secs),
    }
}

impl Snapshots for Rds {
    fn create<'a>(
        &'a self,
        cluster: &'a str,
        name: &'a str,
        tags: &'a [(String, String)],
    ) -> BoxFuture<'a, Result<(), SnapshotError>> {
        Box::pin(async move {
            let mut req = self
                .client()
                .await
                .create_db_cluster_snapshot()
                .db_cluster_identifier(cluster)
                .db_cluster_snapshot_identifier(name);
            for (k, v) in tags {
                req = req.tags(aws_sdk_rds::types::Tag::builder().key(k).value(v).build());
            }
            match req.send().await {
                Ok(_) => Ok(()),
                Err(e)
                    if e.as_service_error()
                        .is_some_and(aws_sdk_rds::operation::create_db_cluster_snapshot::CreateDBClusterSnapshotError::is_db_cluster_snapshot_already_exists_fault) =>
                {
                    Ok(())
                }
                Err(e) => Err(classify("CreateDBClusterSnapshot", &e)),
            }
        })
    }

    fn describe<'a>(
        &'a self,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Option<SnapshotInfo>, SnapshotError>> {
        Box::pin(async move {
            match self
                .client()
                .await
                .describe_db_cluster_snapshots()
                .db_cluster_snapshot_identifier(name)
                .send()
                .await
            {
                Ok(out) => Ok(out.db_cluster_snapshots().first().map(info)),
                Err(e)
                    if e.as_service_error().is_some_and(
                        aws_sdk_rds::operation::describe_db_cluster_snapshots::DescribeDBClusterSnapshotsError::is_db_cluster_snapshot_not_found_fault,
                    ) =>
                {
                    Ok(None)
                }
                Err(e) => Err(classify("DescribeDBClusterSnapshots", &e)),
            }
        })
    }

    fn list_manual<'a>(
        &'a self,
        cluster: &'a str,
    ) -> BoxFuture<'a, Result<Vec<SnapshotInfo>, SnapshotError>> {
        Box::pin(async move {
            let mut all = Vec::new();
            let mut marker: Option<String> = None;
            // Bounded: 100 pages of 100 is far beyond RDS's manual snapshot quota (100/region
            // by default).
            for _ in 0..100 {
                let out = self
                    .client()
                    .await
                    .describe_db_cluster_snapshots()
                    .db_cluster_identifier(cluster)
                    .snapshot_type("manual")
                    .set_marker(marker.take())
                    .send()
                    .await
                    .map_err(|e| classify("DescribeDBClusterSnapshots", &e))?;
                all.extend(out.db_cluster_snapshots().iter().map(info));
                match out.marker() {
                    Some(m) if !m.is_empty() => marker = Some(m.to_owned()),
                    _ => break,
                }
            }
            Ok(all)
        })
    }

    fn delete<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<(), SnapshotError>> {
        Box::pin(async move {
            match self
                .client()
                .await
                .delete_db_cluster_snapshot()
                .db_cluster_snapshot_identifier(name)
                .send()
                .await
            {
                Ok(_) => Ok(()),
                Err(e)
                    if e.as_service_error()
                        .is_some_and(aws_sdk_rds::operation::delete_db_cluster_snapshot::DeleteDBClusterSnapshotError::is_db_cluster_snapshot_not_found_fault) =>
                {
                    Ok(())
                }
                Err(e) => Err(classify("DeleteDBClusterSnapshot", &e)),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2026-12-02T12:00:00Z.
    fn at() -> Timestamp {
        Timestamp::from_second(1_796_212_800).unwrap()
    }

    fn valid_rds_identifier(name: &str) -> bool {
        name.len() <= 63
            && name.starts_with(|c: char| c.is_ascii_lowercase())
            && name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            && !name.contains("--")
            && !name.ends_with('-')
    }

    #[test]
    fn names_are_valid_rds_identifiers_whatever_the_service() {
        for service in [
            "streams",
            "Calls.Admin",
            "a--b__c",
            "-lead-",
            "",
            "9lives",
            &"x".repeat(80),
            &format!("{}-tail", "y".repeat(42)),
        ] {
            let name = snapshot_name(service, "0123abcdef", at());
            assert!(valid_rds_identifier(&name), "{service:?} -> {name}");
            assert!(name.ends_with("-0123abcdef-0tpf2o0"), "{name}");
            assert!(is_cycle_snapshot(service, &name), "{service:?} -> {name}");
            assert!(is_snapshot_of(service, "0123abcdef", &name), "{name}");
            assert!(!is_snapshot_of(service, "0123abcdee", &name), "{name}");
        }
        assert_eq!(
            snapshot_name("streams", "0123abcdef", at()),
            "meridian-streams-0123abcdef-0tpf2o0"
        );
        assert_eq!(
            snapshot_name("Calls.Admin", "0123abcdef", at()),
            "meridian-calls-admin-0123abcdef-0tpf2o0"
        );
        // Another request of the same spec, a second later, is another snapshot.
        assert_ne!(
            snapshot_name("streams", "0123abcdef", at()),
            snapshot_name(
                "streams",
                "0123abcdef",
                at() + std::time::Duration::from_secs(1)
            )
        );
    }

    #[test]
    fn only_the_services_own_cycle_snapshots_are_its() {
        assert!(is_cycle_snapshot(
            "calls",
            "meridian-calls-0123abcdef-0tpf2o0"
        ));
        assert!(!is_cycle_snapshot(
            "calls",
            "meridian-calls-admin-0123abcdef-0tpf2o0"
        ));
        assert!(!is_cycle_snapshot(
            "calls",
            "meridian-calls-0123abcde-0tpf2o0"
        ));
        assert!(!is_cycle_snapshot(
            "calls",
            "meridian-calls-0123ABCDEF-0tpf2o0"
        ));
        assert!(!is_cycle_snapshot("calls", "meridian-calls-0123abcdef"));
        assert!(!is_cycle_snapshot(
            "calls",
            "meridian-calls-0123abcdef-0TPF2O0"
        ));
        assert!(!is_cycle_snapshot("calls", "before-upgrade-calls"));
    }

    #[test]
    fn pruning_keeps_the_newest_and_the_current_one() {
        let snap = |name: &str, at: i64, status: &str| SnapshotInfo {
            name: name.into(),
            status: status.into(),
            arn: None,
            percent_progress: None,
            created_secs: Some(at),
        };
        let all = vec![
            snap("meridian-calls-000000000a-0tpf2o0", 10, "available"),
            snap("meridian-calls-000000000b-0tpf2o0", 20, "available"),
            snap("meridian-calls-000000000c-0tpf2o0", 30, "available"),
            snap("meridian-calls-admin-000000000d-0tpf2o0", 1, "available"),
            snap("by-hand", 2, "available"),
            // The current one, with a clock RDS set oddly: still kept first.
            snap("meridian-calls-000000000e-0tpf2o0", 5, "available"),
        ];
        assert_eq!(
            to_prune("calls", "meridian-calls-000000000e-0tpf2o0", &all, 2),
            vec![
                "meridian-calls-000000000b-0tpf2o0".to_owned(),
                "meridian-calls-000000000a-0tpf2o0".to_owned()
            ]
        );
        assert!(to_prune("calls", "meridian-calls-000000000e-0tpf2o0", &all, 10).is_empty());
        // retain 0 is read as 1: the current snapshot always stays.
        assert_eq!(
            to_prune("calls", "meridian-calls-000000000e-0tpf2o0", &all, 0).len(),
            3
        );
    }
}
