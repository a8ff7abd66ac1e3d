//! The series' names, labels and values, rendered by a local recorder per test.

use std::collections::BTreeSet;

use super::testing::sample;
use super::*;
use crate::crd::RolloutPhase;

fn rendered(f: impl FnOnce()) -> String {
    let recorder = recorder();
    ::metrics::with_local_recorder(&recorder, f);
    recorder.handle().render()
}

#[test]
fn label_values_are_distinct_snake_case_and_each_controller_has_its_kinds() {
    let labels = |v: Vec<&'static str>| {
        for l in &v {
            assert!(
                !l.is_empty() && l.chars().all(|c| c.is_ascii_lowercase() || c == '_'),
                "{l}"
            );
        }
        let set: BTreeSet<_> = v.iter().copied().collect();
        assert_eq!(set.len(), v.len(), "duplicate label value in {v:?}");
        set
    };
    labels(Controller::ALL.iter().map(|c| c.as_str()).collect());
    let kinds = labels(ErrorKind::ALL.iter().map(|k| k.as_str()).collect());
    labels(Verdict::ALL.iter().map(|v| v.as_str()).collect());
    // Every kind is some controller's, and every controller can lose its watch.
    let used: BTreeSet<_> = Controller::ALL
        .iter()
        .flat_map(|c| c.error_kinds())
        .map(|k| k.as_str())
        .collect();
    assert_eq!(used, kinds);
    for c in Controller::ALL {
        assert!(c.error_kinds().contains(&ErrorKind::Watch), "{c:?}");
    }
}

/// `Phase::ALL` is every phase the CRD knows, so no phase can go unexported.
#[test]
fn every_phase_of_the_crd_is_exported() {
    let schema = serde_json::to_value(schemars::schema_for!(Phase)).unwrap();
    let from_schema: BTreeSet<String> = schema["enum"]
        .as_array()
        .expect("Phase is a string enum")
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect();
    let exported: BTreeSet<String> = Phase::ALL.iter().map(ToString::to_string).collect();
    assert_eq!(exported, from_schema);
    assert_eq!(exported.len(), Phase::ALL.len());
}

/// operator/README.md documents every label value the code can emit, and nothing else.
#[test]
fn the_readme_lists_every_kind_and_series() {
    let readme = include_str!("../README.md");
    let section = readme
        .split("\n## Metrics\n")
        .nth(1)
        .expect("operator/README.md has a Metrics section");
    let section = section.split("\n## ").next().unwrap();
    for name in [
        RECONCILES,
        RECONCILE_ERRORS,
        RECONCILE_DURATION,
        RELEASE_PHASE,
        RELEASE_PHASE_SINCE,
        RELEASE_ANALYSIS,
        RELEASE_HELD,
        ROLLOUT_HALTED,
        ROLLOUT_PHASE,
    ] {
        assert!(section.contains(&format!("`{name}")), "{name} undocumented");
    }
    let documented: BTreeSet<&str> = section
        .lines()
        .filter_map(|l| l.strip_prefix("| `")?.split('`').next())
        .filter(|k| ErrorKind::ALL.iter().any(|e| e.as_str() == *k) || !k.contains("meridian"))
        .collect();
    let kinds: BTreeSet<&str> = ErrorKind::ALL.iter().map(|k| k.as_str()).collect();
    assert_eq!(documented, kinds, "the kind table of operator/README.md");
}

#[test]
fn a_reconcile_counts_its_result_kind_and_duration() {
    let text = rendered(|| {
        register(&[Controller::Release]);
        reconciled(Controller::Release, Ok(()), Duration::from_millis(30));
        reconciled(
            Controller::Release,
            Err(ErrorKind::Finalizer),
            Duration::from_secs(3),
        );
        error(Controller::Release, ErrorKind::Watch);
    });
    let r = |s: &str| sample(&text, s);
    assert_eq!(
        r(r#"meridian_operator_reconciles_total{controller="release",result="ok"}"#),
        Some(1.0)
    );
    assert_eq!(
        r(r#"meridian_operator_reconciles_total{controller="release",result="error"}"#),
        Some(1.0)
    );
    for (kind, n) in [
        ("finalizer", 1.0),
        ("watch", 1.0),
        ("kube_api", 0.0),
        ("invalid_object", 0.0),
    ] {
        assert_eq!(
            r(&format!(
                r#"meridian_operator_reconcile_errors_total{{controller="release",kind="{kind}"}}"#
            )),
            Some(n),
            "{kind}"
        );
    }
    assert_eq!(
        r(r#"meridian_operator_reconcile_errors_total{controller="release",kind="kubeconfig"}"#),
        None,
        "not a release controller's kind"
    );
    let bucket = |le: &str| {
        r(&format!(
            r#"meridian_operator_reconcile_duration_seconds_bucket{{controller="release",le="{le}"}}"#
        ))
    };
    assert_eq!(bucket("0.025"), Some(0.0));
    assert_eq!(bucket("0.05"), Some(1.0));
    assert_eq!(bucket("2.5"), Some(1.0));
    assert_eq!(bucket("5"), Some(2.0));
    assert_eq!(bucket("+Inf"), Some(2.0));
    assert_eq!(
        r(r#"meridian_operator_reconcile_duration_seconds_sum{controller="release"}"#),
        Some(3.03)
    );
    assert!(text.contains("# TYPE meridian_operator_reconcile_duration_seconds histogram\n"));
    assert!(!text.contains("rollout"), "{text}");
}

#[test]
fn one_phase_is_current_and_deletion_zeroes_them_all() {
    let since: Timestamp = "2026-11-23T12:00:00.5Z".parse().unwrap();
    let phase = |text: &str, p: &str| {
        sample(
            text,
            &format!(
                r#"meridian_release_phase{{namespace="meridian",release="calls",service="calls",phase="{p}"}}"#
            ),
        )
    };
    let text = rendered(|| {
        release_phase("meridian", "calls", "calls", Phase::Migrating, Some(since));
        release_phase("meridian", "calls", "calls", Phase::Analyzing, Some(since));
    });
    for p in Phase::ALL {
        let want = if p == Phase::Analyzing { 1.0 } else { 0.0 };
        assert_eq!(phase(&text, &p.to_string()), Some(want), "{p}");
    }
    assert_eq!(
        sample(
            &text,
            r#"meridian_release_phase_since_timestamp_seconds{namespace="meridian",release="calls"}"#
        ),
        Some(1_795_435_200.5)
    );
    for verdict in ["passed", "breached", "error"] {
        assert_eq!(
            sample(
                &text,
                &format!(
                    r#"meridian_release_analysis_total{{namespace="meridian",service="calls",verdict="{verdict}"}}"#
                )
            ),
            Some(0.0),
            "{verdict} exists before the first analysis"
        );
    }

    let text = rendered(|| {
        release_phase("meridian", "calls", "calls", Phase::Failed, None);
        release_deleted("meridian", "calls", "calls");
    });
    for p in Phase::ALL {
        assert_eq!(phase(&text, &p.to_string()), Some(0.0), "{p}");
    }
    assert!(
        !text.contains(RELEASE_PHASE_SINCE),
        "no phaseSince, no series"
    );
}

#[test]
fn analyses_and_halts_are_counted_per_object() {
    let text = rendered(|| {
        release_analysis("meridian", "streams", Verdict::Passed);
        release_analysis("meridian", "streams", Verdict::Breached);
        release_analysis("meridian", "streams", Verdict::Breached);
        rollout_halted("meridian", "calls-0123456789ab-se", true);
        rollout_halted("meridian", "calls-0123456789ab-no", false);
    });
    let r = |s: &str| sample(&text, s);
    assert_eq!(
        r(
            r#"meridian_release_analysis_total{namespace="meridian",service="streams",verdict="passed"}"#
        ),
        Some(1.0)
    );
    assert_eq!(
        r(
            r#"meridian_release_analysis_total{namespace="meridian",service="streams",verdict="breached"}"#
        ),
        Some(2.0)
    );
    assert_eq!(
        r(r#"meridian_rollout_halted{namespace="meridian",rollout="calls-0123456789ab-se"}"#),
        Some(1.0)
    );
    assert_eq!(
        r(r#"meridian_rollout_halted{namespace="meridian",rollout="calls-0123456789ab-no"}"#),
        Some(0.0)
    );
}

#[test]
fn a_deleted_or_moved_rollout_stops_reporting_halted() {
    let text = rendered(|| {
        rollout_halted("meridian", "streams-0123456789ab-se", true);
        rollout_deleted("streams-0123456789ab-se");
        rollout_halted("meridian", "streams-0123456789ab-no", true);
        rollout_halted("media", "streams-0123456789ab-no", true);
        rollout_deleted("never-seen");
    });
    let r = |s: &str| sample(&text, s);
    assert_eq!(
        r(r#"meridian_rollout_halted{namespace="meridian",rollout="streams-0123456789ab-se"}"#),
        Some(0.0)
    );
    assert_eq!(
        r(r#"meridian_rollout_halted{namespace="meridian",rollout="streams-0123456789ab-no"}"#),
        Some(0.0),
        "the old namespace's series"
    );
    assert_eq!(
        r(r#"meridian_rollout_halted{namespace="media",rollout="streams-0123456789ab-no"}"#),
        Some(1.0)
    );
    assert!(!text.contains("never-seen"));
}

#[test]
fn a_rollout_is_halted_once_a_failure_stopped_it() {
    use crate::rollout::clusters::halted;
    for (phase, want) in [
        (RolloutPhase::Progressing, false),
        (RolloutPhase::Baking, false),
        (RolloutPhase::Succeeded, false),
        (RolloutPhase::Halted, true),
        (RolloutPhase::RollingBack, true),
        (RolloutPhase::RolledBack, true),
        // A newer build took over: nothing failed, nobody needs paging for this Rollout.
        (RolloutPhase::Superseded, false),
    ] {
        assert_eq!(halted(phase), want, "{phase:?}");
    }
}

/// `RolloutPhase::ALL` is every phase the CRD knows, so no phase can go unexported.
#[test]
fn every_rollout_phase_of_the_crd_is_exported() {
    let schema = serde_json::to_value(schemars::schema_for!(RolloutPhase)).unwrap();
    let from_schema: BTreeSet<String> = schema["enum"]
        .as_array()
        .expect("RolloutPhase is a string enum")
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect();
    let exported: BTreeSet<String> = RolloutPhase::ALL.iter().map(ToString::to_string).collect();
    assert_eq!(exported, from_schema);
    assert_eq!(exported.len(), RolloutPhase::ALL.len());
}

/// A superseded Rollout is not halted, and says so in its phase series; deletion zeroes both.
#[test]
fn a_superseded_rollout_is_visible_by_phase_and_not_halted() {
    use crate::rollout::clusters::halted;
    let series = |p: &str| {
        format!(
            r#"meridian_rollout_phase{{namespace="meridian",rollout="calls-0123456789ab",phase="{p}"}}"#
        )
    };
    let text = rendered(|| {
        rollout_halted(
            "meridian",
            "calls-0123456789ab",
            halted(RolloutPhase::Superseded),
        );
        rollout_phase("meridian", "calls-0123456789ab", RolloutPhase::Superseded);
    });
    assert_eq!(
        sample(
            &text,
            r#"meridian_rollout_halted{namespace="meridian",rollout="calls-0123456789ab"}"#
        ),
        Some(0.0)
    );
    for p in RolloutPhase::ALL {
        let want = if p == RolloutPhase::Superseded {
            1.0
        } else {
            0.0
        };
        assert_eq!(
            sample(&text, &series(&p.to_string())),
            Some(want),
            "{p}\n{text}"
        );
    }
    let text = rendered(|| {
        rollout_halted("meridian", "calls-0123456789ab", true);
        rollout_phase("meridian", "calls-0123456789ab", RolloutPhase::Halted);
        rollout_deleted("calls-0123456789ab");
    });
    for p in RolloutPhase::ALL {
        assert_eq!(sample(&text, &series(&p.to_string())), Some(0.0), "{p}");
    }
}
