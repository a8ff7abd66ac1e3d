use super::*;

const MANIFEST: &str = r"
apiVersion: meridian.dev/v1alpha1
kind: Release
metadata:
  name: streams
  namespace: meridian
spec:
  service: streams
  image: 123456789012.dkr.ecr.eu-north-1.amazonaws.com/meridian/meridian-streams:abc1234
  replicas: 2
  activeService: streams
  previewService: streams-preview
  analysis:
    probe:
      path: /streams/v1/health
      requests: 50
      p99Ms: 250
      maxErrorRate: 0.01
";

#[test]
fn a_rendered_release_manifest_parses_with_the_operators_defaults() {
    let spec = release_spec_from_manifest(MANIFEST).unwrap();
    assert_eq!(spec.service, "streams");
    assert_eq!(spec.scale_down_delay_seconds, 300, "the CRD's default");
    assert_eq!(spec.analysis.count, 1);
    assert!(spec.auto_promote);
}

#[test]
fn fields_ecs_cannot_honour_are_refused_not_ignored() {
    let manual = MANIFEST.replace("  replicas: 2\n", "  replicas: 2\n  autoPromote: false\n");
    let e = release_spec_from_manifest(&manual).unwrap_err().to_string();
    assert!(e.contains("autoPromote"), "{e}");

    let prom = MANIFEST.replace(
        "      maxErrorRate: 0.01\n",
        "      maxErrorRate: 0.01\n    prometheus:\n      address: http://p:9090\n      query: up\n      maxValue: 1\n",
    );
    let e = release_spec_from_manifest(&prom).unwrap_err().to_string();
    assert!(e.contains("analysis.prometheus"), "{e}");

    let token = MANIFEST.replace(
        "      maxErrorRate: 0.01\n",
        "      maxErrorRate: 0.01\n      bearerTokenSecret:\n        name: slo-probe-token\n",
    );
    let e = release_spec_from_manifest(&token).unwrap_err().to_string();
    assert!(e.contains("--probe-token-file"), "{e}");

    let paused = MANIFEST.replace("  replicas: 2\n", "  replicas: 2\n  paused: true\n");
    let e = release_spec_from_manifest(&paused).unwrap_err().to_string();
    assert!(e.contains("paused / abort"), "{e}");

    let rollout = MANIFEST.replace("kind: Release", "kind: Rollout");
    assert!(release_spec_from_manifest(&rollout).is_err());
}

#[test]
fn the_terraform_target_shape_parses_and_unknown_keys_are_refused() {
    let json = serde_json::json!({
        "cluster": "meridian-prod-dk",
        "services": { "blue": "streams-blue", "green": "streams-green" },
        "target_groups": { "blue": "arn:tg/blue", "green": "arn:tg/green" },
        "listener_rule_arn": "arn:rule/prod",
        "preview_listener_rule_arn": "arn:rule/preview",
        "preview_url": "https://alb.example:8443",
        "capacity": { "min": 2, "max": 6 },
    });
    let t: EcsTarget = serde_json::from_value(json.clone()).unwrap();
    assert_eq!(t.capacity, Some(Capacity { min: 2, max: 6 }));
    assert_eq!(t.services.get(Colour::Green), "streams-green");
    assert_eq!(t.target_groups.get(Colour::Blue), "arn:tg/blue");
    let mut typo = json;
    typo["listener_rule"] = "x".into();
    assert!(serde_json::from_value::<EcsTarget>(typo).is_err());
}
