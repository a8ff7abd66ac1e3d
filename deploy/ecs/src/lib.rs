//! A Release's blue-green on ECS Fargate (the `small` countries, terraform/modules/ecs), run by
//! Buildkite's production step as `meridian-deploy ecs` where a country has no Kubernetes for
//! the operator to run in.
//!
//! The same [`ReleaseSpec`] the operator reads drives it (the manifest `buildkite/lib.sh
//! render_release` writes), with the same meaning wherever ECS has the same thing
//! (operator/README.md, "ECS"):
//!
//! 1. the production listener rule says which colour is active (the target group it forwards to);
//! 2. a new task definition revision is registered from the active service's, with the
//!    container named `spec.service` on `spec.image` (everything else copied: roles, secrets,
//!    environment, sizes stay what Terraform registered);
//! 3. the idle colour's ECS service is created or updated onto it with `previewReplicas`, and the
//!    preview (test) listener rule is pointed at the idle colour's target group;
//! 4. the command waits, bounded by `progressDeadlineSeconds`, until the rollout is the new
//!    revision's: the idle service's PRIMARY deployment (DescribeServices) runs the new task
//!    definition with at least the preview's count of running tasks, and every healthy target in
//!    its target group is one of the service's running tasks of that revision (matched by the
//!    task's ENI IP, DescribeTasks), at least the preview's count of them. A deployment of the new
//!    revision that ECS marks `FAILED`, or a PRIMARY deployment on another revision (ECS's
//!    deployment circuit breaker rolled back, or something else changed the service), ends the
//!    wait at once and rolls back per policy: old tasks (rolled back, or left by a `Freeze`) are
//!    never analysed as the new image;
//! 5. the preview is analysed with the operator's probe (`operator/probe`, the library the SLO
//!    gate uses): `analysis.count` measurements every `analysis.interval` after
//!    `analysis.initialDelay`, at most `analysis.failureLimit` failures;
//! 6. the production listener rule is switched to the new colour, which is then verified every
//!    interval until `scaleDownDelaySeconds` have passed, and only then is the old colour
//!    scaled to 0;
//!    Where Terraform gave the colours autoscaling ranges, the range moves with production: the
//!    preview is pinned at its count while analysed, takes the active colour's range when it is
//!    promoted, and the scaled-down colour is pinned at 0 (else target tracking would bring the
//!    idle colour back to its minimum);
//! 7. a breach beyond the failure limit, before or after the switch, rolls back per
//!    `rollbackPolicy`: `Revert` puts the production rule back on the old colour and scales the
//!    new one (and pins its range) to 0; `Freeze` puts the rule back and scales nothing. A
//!    missed progress deadline with `Revert` scales and pins the preview to 0 as well.
//!
//! Each step's effect is read back through the APIs, never assumed, so a rerun after a crash
//! picks up from what AWS says (the production rule is the one source of the active colour).
//! A rerun whose image the active colour already runs finishes an interrupted cycle at once
//! (no second verification, no scale-down delay): the active colour gets production's range,
//! the idle colour is pinned and scaled to 0 — whatever it runs, a preview a stopped run or a
//! `Freeze` left included.

use std::time::{Duration, Instant};

use aws_sdk_applicationautoscaling::types::{ScalableDimension, ServiceNamespace};
use aws_sdk_ecs::types::{
    ContainerDefinition, DeploymentRolloutState, DesiredStatus, LaunchType, LoadBalancer,
    NetworkConfiguration, TaskDefinition,
};
use aws_sdk_elasticloadbalancingv2::types::{Action, ActionTypeEnum, TargetHealthStateEnum};
use operator::crd::{Colour, ReleaseSpec, RollbackPolicy};
use serde::Deserialize;

/// Where one service of one country runs on ECS: what Terraform builds (terraform/modules/ecs,
/// output `blue_green`) and publishes for the pipeline, one JSON object per service.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub struct EcsTarget {
    /// ECS cluster name (e.g. `meridian-prod-dk`).
    pub cluster: String,
    /// ECS service name of each colour (`<service>-blue`, `<service>-green`).
    pub services: ByColour,
    /// Target group ARN of each colour.
    pub target_groups: ByColour,
    /// The public listener's rule that forwards the service's paths: its target group is the
    /// active colour.
    pub listener_rule_arn: String,
    /// The test listener's rule for the same paths: pointed at the colour being analysed.
    pub preview_listener_rule_arn: String,
    /// Base URL of the test listener (scheme, host, port); the probe GETs
    /// `<preview_url><analysis.probe.path>`. `analysis.probe.port` does not apply on ECS.
    pub preview_url: String,
    /// Production's autoscaling range as Terraform sizes it: the promoted colour gets it (so a
    /// changed sizing applies at the next deploy). Absent: the active colour's current range.
    #[serde(default)]
    pub capacity: Option<Capacity>,
}

/// An autoscaling range (Application Auto Scaling's min and max capacity).
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Capacity {
    pub min: i32,
    pub max: i32,
}

/// One value per colour.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ByColour {
    pub blue: String,
    pub green: String,
}

impl ByColour {
    pub fn get(&self, colour: Colour) -> &str {
        match colour {
            Colour::Blue => &self.blue,
            Colour::Green => &self.green,
        }
    }
}

/// How long the command waits between two polls of the target group's health (the analysis
/// and scale-down timings come from the Release).
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    pub health_poll: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Self {
            health_poll: Duration::from_secs(5),
        }
    }
}

/// How a deploy ended when nothing went wrong with the APIs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The new colour serves production and the old one is scaled to 0.
    Promoted {
        active: Colour,
        task_definition: String,
    },
    /// The active colour already runs `spec.image`. `finished`: a cycle had been interrupted
    /// after the production switch, and this run finished it at once (the active colour given
    /// production's range, the idle one scaled and pinned to 0; no verification, no scale-down
    /// delay); `false`: nothing needed changing.
    AlreadyActive { active: Colour, finished: bool },
    /// The analysis or the verification failed, or ECS did not roll the new task definition out
    /// on the idle colour (a failed deployment, its circuit breaker's rollback): production is
    /// back on (or never left) the old colour. `scaled_down` says whether the new colour was
    /// scaled to 0 (`Revert`) or left running for a human (`Freeze`).
    RolledBack {
        active: Colour,
        reason: String,
        scaled_down: bool,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Spec(String),
    #[error("AWS {call}: {message}")]
    Aws { call: &'static str, message: String },
    #[error("{what} did not happen within {seconds}s (progressDeadlineSeconds)")]
    Deadline { what: String, seconds: u32 },
    #[error("the AWS state is not what a blue-green deploy expects: {0}")]
    State(String),
}

fn aws<E>(call: &'static str) -> impl FnOnce(E) -> Error
where
    E: std::error::Error + Send + Sync + 'static,
{
    move |e| Error::Aws {
        call,
        message: aws_sdk_ecs::error::DisplayErrorContext(e).to_string(),
    }
}

/// Reads a Release manifest (YAML or JSON, as `buildkite/lib.sh render_release` writes it) and
/// returns its spec. Only what ECS can honour is accepted (see [`check_spec`]).
pub fn release_spec_from_manifest(text: &str) -> Result<ReleaseSpec, Error> {
    #[derive(Deserialize)]
    struct Manifest {
        kind: String,
        spec: ReleaseSpec,
    }
    let manifest: Manifest = serde_saphyr::from_str(text)
        .map_err(|e| Error::Spec(format!("the Release manifest does not parse: {e}")))?;
    if manifest.kind != "Release" {
        return Err(Error::Spec(format!(
            "kind is {:?}, expected Release",
            manifest.kind
        )));
    }
    check_spec(&manifest.spec)?;
    Ok(manifest.spec)
}

/// Refuses the Release fields that mean something ECS cannot do here, instead of silently
/// ignoring them (operator/README.md, "ECS").
pub fn check_spec(spec: &ReleaseSpec) -> Result<(), Error> {
    if !spec.auto_promote {
        return Err(Error::Spec(
            "autoPromote: false needs a human to promote, which only the operator waits for; \
             `meridian-deploy ecs` promotes when the analysis passes"
                .into(),
        ));
    }
    if spec.analysis.prometheus.is_some() {
        return Err(Error::Spec(
            "analysis.prometheus is not available on ECS (no in-cluster Prometheus): \
             the probe alone judges"
                .into(),
        ));
    }
    if spec.analysis.probe.bearer_token_secret.is_some() {
        return Err(Error::Spec(
            "analysis.probe.bearerTokenSecret names a Kubernetes Secret; on ECS pass \
             --probe-token-file"
                .into(),
        ));
    }
    if spec.paused || spec.abort {
        return Err(Error::Spec(
            "paused / abort hold or stop an operator's cycle; `meridian-deploy ecs` runs one \
             cycle to its end: do not run it instead"
                .into(),
        ));
    }
    if spec.replicas < 1 {
        return Err(Error::Spec("replicas must be at least 1".into()));
    }
    if spec.analysis.probe.requests == 0 {
        return Err(Error::Spec(
            "analysis.probe.requests must be at least 1".into(),
        ));
    }
    Ok(())
}

/// The clients a deploy talks to.
pub struct Clients {
    pub ecs: aws_sdk_ecs::Client,
    pub elb: aws_sdk_elasticloadbalancingv2::Client,
    pub autoscaling: aws_sdk_applicationautoscaling::Client,
}

impl Clients {
    pub fn new(config: &aws_config::SdkConfig) -> Self {
        Self {
            ecs: aws_sdk_ecs::Client::new(config),
            elb: aws_sdk_elasticloadbalancingv2::Client::new(config),
            autoscaling: aws_sdk_applicationautoscaling::Client::new(config),
        }
    }
}

/// The AWS config loader on the workspace's one TLS stack (rustls with ring, see the
/// workspace Cargo.toml's note on aws-config): region and credentials from the usual chain.
pub fn sdk_config_loader() -> aws_config::ConfigLoader {
    let https = aws_smithy_http_client::Builder::new()
        .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(
            aws_smithy_http_client::tls::rustls_provider::CryptoMode::Ring,
        ))
        .build_https();
    aws_config::defaults(aws_config::BehaviorVersion::latest()).http_client(https)
}

/// One blue-green cycle of `spec` onto `target`. `bearer_token` is sent with every probe
/// request. Progress goes to `tracing` (the pipeline log), one line per step.
pub async fn deploy(
    clients: &Clients,
    target: &EcsTarget,
    spec: &ReleaseSpec,
    bearer_token: Option<probe::BearerToken>,
    timing: Timing,
) -> Result<Outcome, Error> {
    check_spec(spec)?;
    let started = Instant::now();
    let deadline = started + Duration::from_secs(u64::from(spec.progress_deadline_seconds));

    let active = active_colour(clients, target).await?;
    let preview = active.other();
    let active_service = describe_service(clients, target, target.services.get(active))
        .await?
        .ok_or_else(|| {
            Error::State(format!(
                "the active colour's service {} does not exist in {}",
                target.services.get(active),
                target.cluster
            ))
        })?;
    let base_arn = active_service
        .task_definition()
        .ok_or_else(|| Error::State("the active service has no task definition".into()))?
        .to_owned();
    let base = clients
        .ecs
        .describe_task_definition()
        .task_definition(&base_arn)
        .send()
        .await
        .map_err(aws("DescribeTaskDefinition"))?
        .task_definition
        .ok_or_else(|| Error::State(format!("{base_arn} has no definition")))?;
    // Terraform gives each colour an autoscaling range; the active one's is production's.
    let terraform_range = match target.capacity {
        Some(c) if c.min >= 0 && c.max >= c.min => Some((c.min, c.max)),
        Some(c) => {
            return Err(Error::Spec(format!(
                "the target's capacity {}-{} is not a range",
                c.min, c.max
            )));
        }
        None => None,
    };
    // Terraform registers a new revision of the family when a service's definition changes
    // (environment, secrets, CPU, ...) but leaves the running services on theirs
    // (ignore_changes): the new image goes onto the family's latest revision, so such a change
    // ships with the next release, through its analysis, instead of never.
    let family = base
        .family()
        .ok_or_else(|| Error::State(format!("{base_arn} has no family")))?;
    let latest = clients
        .ecs
        .describe_task_definition()
        .task_definition(family)
        .send()
        .await
        .map_err(aws("DescribeTaskDefinition"))?
        .task_definition
        .ok_or_else(|| Error::State(format!("the family {family} has no revision")))?;
    if container(&base, &spec.service)?.image() == Some(spec.image.as_str()) {
        tracing::info!(%active, image = %spec.image, "the active colour already runs the image");
        if latest.revision() > base.revision() {
            // Nothing is deployed for a settings-only change: say so, or it looks shipped.
            tracing::warn!(
                running = %base_arn,
                latest = latest.task_definition_arn().unwrap_or("?"),
                "the family has a newer revision (a Terraform change) that ships with the next image, not now"
            );
        }
        let finished = finish_cycle(clients, target, active, terraform_range).await?;
        return Ok(Outcome::AlreadyActive { active, finished });
    }
    // The newest ACTIVE revision can be older than the running one (a revision deregistered by
    // hand): then the running one, never an older set of settings.
    let base = if latest.revision() < base.revision() {
        tracing::warn!(
            running = %base_arn,
            latest = latest.task_definition_arn().unwrap_or("?"),
            "the family's newest active revision is older than the running one: building on the running one"
        );
        base
    } else {
        if latest.task_definition_arn() != Some(base_arn.as_str()) {
            // Settings change with this release: a rollback by release keeps them (revert
            // them in Terraform first; runbooks/procedures/rollback.md).
            tracing::warn!(
                running = %base_arn,
                latest = latest.task_definition_arn().unwrap_or("?"),
                "the new image goes onto the family's latest revision, whose settings differ from the running one's"
            );
        }
        latest
    };
    let task_definition = register_with_image(clients, &base, &spec.service, &spec.image).await?;
    tracing::info!(%task_definition, "registered the new task definition");

    let preview_count = spec.preview_replicas.unwrap_or(spec.replicas);
    deploy_preview(
        clients,
        target,
        preview,
        &active_service,
        &task_definition,
        preview_count,
        spec,
    )
    .await?;
    // While analysed, the preview is pinned at its count so target tracking cannot move it.
    let production_range = match terraform_range {
        Some(r) => Some(r),
        None => capacity(clients, target, active).await?,
    };
    if production_range.is_some() {
        set_capacity(clients, target, preview, preview_count, preview_count).await?;
    }
    point_rule(
        clients,
        &target.preview_listener_rule_arn,
        target.target_groups.get(preview),
    )
    .await?;
    tracing::info!(%preview, count = preview_count, "preview service deployed; waiting for its rollout");
    match wait_rolled_out(
        clients,
        target,
        preview,
        &task_definition,
        preview_count,
        deadline,
        spec,
        timing,
    )
    .await
    {
        Ok(Ok(())) => {}
        // ECS itself gave up on the new revision (its circuit breaker, or another deployment):
        // whatever the preview's target group holds now is not the image to analyse.
        Ok(Err(reason)) => {
            tracing::warn!(
                %reason,
                "the new revision did not roll out; production stays on the active colour"
            );
            return roll_back(clients, target, spec, active, preview, reason).await;
        }
        Err(e) => {
            // The preview never took traffic: per policy, stop paying for its tasks, and pin
            // its range at 0 (else target tracking brings it back to the preview count).
            if spec.rollback_policy == RollbackPolicy::Revert {
                if production_range.is_some() {
                    set_capacity(clients, target, preview, 0, 0).await?;
                }
                scale(clients, target, preview, 0).await?;
            }
            return Err(e);
        }
    }

    // Analysis of the preview, before any production traffic reaches it.
    if let Err(reason) = analyse(target, spec, bearer_token.clone()).await {
        tracing::warn!(%reason, "analysis failed; production stays on the active colour");
        return roll_back(clients, target, spec, active, preview, reason).await;
    }

    point_rule(
        clients,
        &target.listener_rule_arn,
        target.target_groups.get(preview),
    )
    .await?;
    tracing::info!(active = %preview, "production listener switched");
    if let Some((min, max)) = production_range {
        set_capacity(clients, target, preview, min, max).await?;
    }

    // Verification: the new colour is measured every interval until the scale-down delay ends;
    // the old colour keeps running so that going back is one rule change.
    let scale_down_at =
        Instant::now() + Duration::from_secs(u64::from(spec.scale_down_delay_seconds));
    if let Err(reason) = verify_until(target, spec, bearer_token, scale_down_at).await {
        tracing::warn!(%reason, "verification failed after the switch; putting production back");
        point_rule(
            clients,
            &target.listener_rule_arn,
            target.target_groups.get(active),
        )
        .await?;
        return roll_back(clients, target, spec, active, preview, reason).await;
    }

    if production_range.is_some() {
        set_capacity(clients, target, active, 0, 0).await?;
    }
    scale(clients, target, active, 0).await?;
    tracing::info!(old = %active, "scale-down delay over; old colour scaled to 0");
    Ok(Outcome::Promoted {
        active: preview,
        task_definition,
    })
}

/// The colour whose target group the production rule forwards to.
pub async fn active_colour(clients: &Clients, target: &EcsTarget) -> Result<Colour, Error> {
    let tg = forwarded_target_group(clients, &target.listener_rule_arn).await?;
    if tg == target.target_groups.blue {
        Ok(Colour::Blue)
    } else if tg == target.target_groups.green {
        Ok(Colour::Green)
    } else {
        Err(Error::State(format!(
            "the production rule forwards to {tg}, neither colour's target group"
        )))
    }
}

/// The single target group a listener rule forwards to.
pub async fn forwarded_target_group(clients: &Clients, rule_arn: &str) -> Result<String, Error> {
    let out = clients
        .elb
        .describe_rules()
        .rule_arns(rule_arn)
        .send()
        .await
        .map_err(aws("DescribeRules"))?;
    let rule = out
        .rules()
        .first()
        .ok_or_else(|| Error::State(format!("listener rule {rule_arn} not found")))?;
    let forwards: Vec<&Action> = rule
        .actions()
        .iter()
        .filter(|a| a.r#type() == Some(&ActionTypeEnum::Forward))
        .collect();
    let [action] = forwards.as_slice() else {
        return Err(Error::State(format!(
            "listener rule {rule_arn} has {} forward actions, expected 1",
            forwards.len()
        )));
    };
    if let Some(tg) = action.target_group_arn() {
        return Ok(tg.to_owned());
    }
    // A forward written as a (weighted) target group list: exactly one group may take traffic.
    let groups: Vec<&str> = action
        .forward_config()
        .map(|f| {
            f.target_groups()
                .iter()
                .filter(|g| g.weight().unwrap_or(1) > 0)
                .filter_map(|g| g.target_group_arn())
                .collect()
        })
        .unwrap_or_default();
    match groups.as_slice() {
        [tg] => Ok((*tg).to_owned()),
        _ => Err(Error::State(format!(
            "listener rule {rule_arn} forwards to {} target groups, expected 1",
            groups.len()
        ))),
    }
}

/// Points a listener rule's forward action at one target group (all of its traffic).
async fn point_rule(clients: &Clients, rule_arn: &str, target_group: &str) -> Result<(), Error> {
    clients
        .elb
        .modify_rule()
        .rule_arn(rule_arn)
        .actions(
            Action::builder()
                .r#type(ActionTypeEnum::Forward)
                .target_group_arn(target_group)
                .build(),
        )
        .send()
        .await
        .map_err(aws("ModifyRule"))?;
    let now = forwarded_target_group(clients, rule_arn).await?;
    if now != target_group {
        return Err(Error::State(format!(
            "listener rule {rule_arn} forwards to {now} after ModifyRule to {target_group}"
        )));
    }
    Ok(())
}

async fn describe_service(
    clients: &Clients,
    target: &EcsTarget,
    name: &str,
) -> Result<Option<aws_sdk_ecs::types::Service>, Error> {
    let out = clients
        .ecs
        .describe_services()
        .cluster(&target.cluster)
        .services(name)
        .send()
        .await
        .map_err(aws("DescribeServices"))?;
    // A deleted service stays visible as INACTIVE for a while; it cannot be updated.
    Ok(out
        .services()
        .iter()
        .find(|s| s.status() == Some("ACTIVE"))
        .cloned())
}

fn container<'a>(td: &'a TaskDefinition, name: &str) -> Result<&'a ContainerDefinition, Error> {
    td.container_definitions()
        .iter()
        .find(|c| c.name() == Some(name))
        .ok_or_else(|| {
            Error::State(format!(
                "task definition {} has no container named {name} (spec.service)",
                td.task_definition_arn().unwrap_or("?")
            ))
        })
}

/// Registers a revision of `base`'s family that differs only in `container`'s image.
async fn register_with_image(
    clients: &Clients,
    base: &TaskDefinition,
    container_name: &str,
    image: &str,
) -> Result<String, Error> {
    container(base, container_name)?;
    let containers: Vec<ContainerDefinition> = base
        .container_definitions()
        .iter()
        .map(|c| {
            if c.name() == Some(container_name) {
                let mut c = c.clone();
                c.image = Some(image.to_owned());
                c
            } else {
                c.clone()
            }
        })
        .collect();
    let family = base
        .family()
        .ok_or_else(|| Error::State("the base task definition has no family".into()))?;
    let out = clients
        .ecs
        .register_task_definition()
        .family(family)
        .set_container_definitions(Some(containers))
        .set_task_role_arn(base.task_role_arn().map(str::to_owned))
        .set_execution_role_arn(base.execution_role_arn().map(str::to_owned))
        .set_network_mode(base.network_mode().cloned())
        .set_volumes(Some(base.volumes().to_vec()))
        .set_requires_compatibilities(Some(base.requires_compatibilities().to_vec()))
        .set_cpu(base.cpu().map(str::to_owned))
        .set_memory(base.memory().map(str::to_owned))
        .set_runtime_platform(base.runtime_platform().cloned())
        .set_ephemeral_storage(base.ephemeral_storage().cloned())
        .set_placement_constraints(Some(
            base.placement_constraints()
                .iter()
                .map(|p| {
                    aws_sdk_ecs::types::TaskDefinitionPlacementConstraint::builder()
                        .set_type(p.r#type().cloned())
                        .set_expression(p.expression().map(str::to_owned))
                        .build()
                })
                .collect(),
        ))
        .send()
        .await
        .map_err(aws("RegisterTaskDefinition"))?;
    out.task_definition
        .and_then(|t| t.task_definition_arn)
        .ok_or_else(|| Error::State("RegisterTaskDefinition returned no ARN".into()))
}

/// Creates the idle colour's service (the first release on this stack after Terraform created
/// only the active one's) or moves it onto `task_definition` with `count` tasks.
async fn deploy_preview(
    clients: &Clients,
    target: &EcsTarget,
    preview: Colour,
    active_service: &aws_sdk_ecs::types::Service,
    task_definition: &str,
    count: i32,
    spec: &ReleaseSpec,
) -> Result<(), Error> {
    let name = target.services.get(preview);
    if describe_service(clients, target, name).await?.is_some() {
        clients
            .ecs
            .update_service()
            .cluster(&target.cluster)
            .service(name)
            .task_definition(task_definition)
            .desired_count(count)
            .send()
            .await
            .map_err(aws("UpdateService"))?;
        return Ok(());
    }
    // The same network placement as the active colour, registered into the idle colour's
    // target group on the container's port.
    let network = active_service
        .network_configuration()
        .and_then(NetworkConfiguration::awsvpc_configuration)
        .cloned()
        .ok_or_else(|| {
            Error::State("the active service has no awsvpc network configuration".into())
        })?;
    clients
        .ecs
        .create_service()
        .cluster(&target.cluster)
        .service_name(name)
        .task_definition(task_definition)
        .desired_count(count)
        .launch_type(LaunchType::Fargate)
        .network_configuration(
            NetworkConfiguration::builder()
                .awsvpc_configuration(network)
                .build(),
        )
        .load_balancers(
            LoadBalancer::builder()
                .target_group_arn(target.target_groups.get(preview))
                .container_name(&spec.service)
                .container_port(spec.container_port)
                .build(),
        )
        .health_check_grace_period_seconds(30)
        .send()
        .await
        .map_err(aws("CreateService"))?;
    Ok(())
}

async fn scale(
    clients: &Clients,
    target: &EcsTarget,
    colour: Colour,
    count: i32,
) -> Result<(), Error> {
    clients
        .ecs
        .update_service()
        .cluster(&target.cluster)
        .service(target.services.get(colour))
        .desired_count(count)
        .send()
        .await
        .map_err(aws("UpdateService"))?;
    Ok(())
}

/// Application Auto Scaling's id of a colour's service.
fn scalable_resource(target: &EcsTarget, colour: Colour) -> String {
    format!("service/{}/{}", target.cluster, target.services.get(colour))
}

/// The colour's autoscaling range (min, max), `None` when it has no scalable target.
pub async fn capacity(
    clients: &Clients,
    target: &EcsTarget,
    colour: Colour,
) -> Result<Option<(i32, i32)>, Error> {
    let out = clients
        .autoscaling
        .describe_scalable_targets()
        .service_namespace(ServiceNamespace::Ecs)
        .scalable_dimension(ScalableDimension::EcsServiceDesiredCount)
        .resource_ids(scalable_resource(target, colour))
        .send()
        .await
        .map_err(aws("DescribeScalableTargets"))?;
    Ok(out
        .scalable_targets()
        .first()
        .map(|t| (t.min_capacity(), t.max_capacity())))
}

/// Registers (or updates) the colour's autoscaling range.
async fn set_capacity(
    clients: &Clients,
    target: &EcsTarget,
    colour: Colour,
    min: i32,
    max: i32,
) -> Result<(), Error> {
    clients
        .autoscaling
        .register_scalable_target()
        .service_namespace(ServiceNamespace::Ecs)
        .scalable_dimension(ScalableDimension::EcsServiceDesiredCount)
        .resource_id(scalable_resource(target, colour))
        .min_capacity(min)
        .max_capacity(max)
        .send()
        .await
        .map_err(aws("RegisterScalableTarget"))?;
    Ok(())
}

/// Finishes a cycle that an interrupted run left after its production switch, once the active
/// colour runs the image: the active colour gets production's range (`terraform_range`, else its
/// own; a State error where the colours' ranges leave that in doubt), the idle colour is pinned
/// at 0 and scaled to 0 (whatever it runs: an abandoned preview too). Done at once: the
/// interrupted run's verification and scale-down delay are not repeated. Returns whether
/// anything had to change.
async fn finish_cycle(
    clients: &Clients,
    target: &EcsTarget,
    active: Colour,
    terraform_range: Option<(i32, i32)>,
) -> Result<bool, Error> {
    let idle = active.other();
    let idle_service = describe_service(clients, target, target.services.get(idle)).await?;
    let active_range = capacity(clients, target, active).await?;
    let idle_range = capacity(clients, target, idle).await?;
    let production_range = match (terraform_range, active_range, idle_range) {
        (Some(r), _, _) => Some(r),
        // Without Terraform's range: the active colour's, unless the idle colour holds another
        // non-zero one. Then either this run's switch was interrupted before the ranges moved
        // (the idle one has production's) or a preview was left pinned (the active one has it):
        // the API cannot tell which.
        (None, Some(a), Some(i)) if i != (0, 0) && i != a => {
            return Err(Error::State(format!(
                "cannot tell production's autoscaling range: the active colour {active} has \
                 {}-{}, the idle colour {idle} {}-{}; give the target a capacity",
                a.0, a.1, i.0, i.1
            )));
        }
        (None, Some(a), _) => Some(a),
        (None, None, Some(i)) if i != (0, 0) => Some(i),
        (None, None, _) => None,
    };
    let mut finished = false;
    if let Some((min, max)) = production_range
        && active_range != Some((min, max))
    {
        tracing::info!(%active, min, max, "finishing an interrupted cycle: production's range");
        set_capacity(clients, target, active, min, max).await?;
        finished = true;
    }
    if let Some(service) = idle_service {
        if production_range.is_some() && idle_range != Some((0, 0)) {
            tracing::info!(%idle, "finishing an interrupted cycle: idle colour pinned at 0");
            set_capacity(clients, target, idle, 0, 0).await?;
            finished = true;
        }
        if service.desired_count() != 0 {
            tracing::info!(
                %idle,
                desired = service.desired_count(),
                "finishing an interrupted cycle: idle colour scaled to 0"
            );
            scale(clients, target, idle, 0).await?;
            finished = true;
        }
    }
    Ok(finished)
}

/// Where the preview's rollout of the new task definition stands, as ECS and the target group
/// say it.
enum Rollout {
    /// ECS's PRIMARY deployment runs the new revision with the preview count, and every healthy
    /// target in the preview's target group is one of its tasks (at least the preview count).
    Ready,
    /// Not yet; why.
    Waiting(String),
    /// ECS will not get there: the deployment failed, or the PRIMARY deployment runs another
    /// revision (the circuit breaker rolled back, or something else changed the service).
    Failed(String),
}

/// Waits until the preview has rolled out `task_definition` ([`Rollout::Ready`]), polling every
/// `timing.health_poll`, until the release's progress deadline. `Ok(Err(why))`: ECS gave up on
/// the new revision, so nothing in the target group is worth analysing.
#[allow(clippy::too_many_arguments)]
async fn wait_rolled_out(
    clients: &Clients,
    target: &EcsTarget,
    preview: Colour,
    task_definition: &str,
    want: i32,
    deadline: Instant,
    spec: &ReleaseSpec,
    timing: Timing,
) -> Result<Result<(), String>, Error> {
    let want = want.max(1);
    loop {
        match rollout(clients, target, preview, task_definition, want).await? {
            Rollout::Ready => return Ok(Ok(())),
            Rollout::Failed(why) => return Ok(Err(why)),
            Rollout::Waiting(why) => {
                if Instant::now() + timing.health_poll > deadline {
                    return Err(Error::Deadline {
                        what: format!(
                            "{want} healthy tasks of {task_definition} behind {} ({why})",
                            target.target_groups.get(preview)
                        ),
                        seconds: spec.progress_deadline_seconds,
                    });
                }
                tracing::debug!(%why, "waiting for the preview's rollout");
            }
        }
        tokio::time::sleep(timing.health_poll).await;
    }
}

/// One look at the preview's rollout: DescribeServices' deployments, then (once the PRIMARY one
/// runs enough tasks) the target group's healthy targets matched to the service's running tasks
/// by their IP (Fargate's awsvpc tasks register as `ip` targets).
async fn rollout(
    clients: &Clients,
    target: &EcsTarget,
    preview: Colour,
    task_definition: &str,
    want: i32,
) -> Result<Rollout, Error> {
    let name = target.services.get(preview);
    let service = describe_service(clients, target, name)
        .await?
        .ok_or_else(|| Error::State(format!("the preview's service {name} no longer exists")))?;
    let deployments = service.deployments();
    if let Some(d) = deployments.iter().find(|d| {
        d.task_definition() == Some(task_definition)
            && d.rollout_state() == Some(&DeploymentRolloutState::Failed)
    }) {
        return Ok(Rollout::Failed(format!(
            "ECS's deployment {} of {task_definition} on {name} failed: {}",
            d.id().unwrap_or("?"),
            d.rollout_state_reason().unwrap_or("no reason given")
        )));
    }
    let Some(primary) = deployments.iter().find(|d| d.status() == Some("PRIMARY")) else {
        return Ok(Rollout::Waiting(format!(
            "{name} has no PRIMARY deployment"
        )));
    };
    if primary.task_definition() != Some(task_definition) {
        return Ok(Rollout::Failed(format!(
            "{name}'s PRIMARY deployment runs {}, not {task_definition}: ECS's circuit breaker \
             rolled the new revision back, or something else changed the service",
            primary.task_definition().unwrap_or("no task definition")
        )));
    }
    if primary.running_count() < want {
        return Ok(Rollout::Waiting(format!(
            "{} of {want} tasks of the new revision running",
            primary.running_count()
        )));
    }

    let target_group = target.target_groups.get(preview);
    let health = clients
        .elb
        .describe_target_health()
        .target_group_arn(target_group)
        .send()
        .await
        .map_err(aws("DescribeTargetHealth"))?;
    let healthy: Vec<&str> = health
        .target_health_descriptions()
        .iter()
        .filter(|d| {
            d.target_health().and_then(|h| h.state()) == Some(&TargetHealthStateEnum::Healthy)
        })
        .filter_map(|d| d.target().and_then(|t| t.id()))
        .collect();
    let new_tasks = task_ips(clients, target, name, task_definition).await?;
    let (new, other): (Vec<&str>, Vec<&str>) =
        healthy.iter().partition(|ip| new_tasks.contains(**ip));
    if !other.is_empty() {
        return Ok(Rollout::Waiting(format!(
            "healthy targets that are not tasks of the new revision: {}",
            other.join(", ")
        )));
    }
    let want = usize::try_from(want).unwrap_or(1);
    if new.len() < want {
        return Ok(Rollout::Waiting(format!(
            "{} of {want} healthy targets",
            new.len()
        )));
    }
    Ok(Rollout::Ready)
}

/// The private IPs of the service's running tasks of `task_definition`.
async fn task_ips(
    clients: &Clients,
    target: &EcsTarget,
    service: &str,
    task_definition: &str,
) -> Result<std::collections::HashSet<String>, Error> {
    let mut arns = Vec::new();
    let mut next: Option<String> = None;
    loop {
        let out = clients
            .ecs
            .list_tasks()
            .cluster(&target.cluster)
            .service_name(service)
            .desired_status(DesiredStatus::Running)
            .set_next_token(next.take())
            .send()
            .await
            .map_err(aws("ListTasks"))?;
        arns.extend(out.task_arns().iter().cloned());
        match out.next_token() {
            Some(t) if !t.is_empty() => next = Some(t.to_owned()),
            _ => break,
        }
    }
    let mut ips = std::collections::HashSet::new();
    // DescribeTasks takes at most 100 tasks a call.
    for chunk in arns.chunks(100) {
        let out = clients
            .ecs
            .describe_tasks()
            .cluster(&target.cluster)
            .set_tasks(Some(chunk.to_vec()))
            .send()
            .await
            .map_err(aws("DescribeTasks"))?;
        for task in out.tasks() {
            if task.task_definition_arn() != Some(task_definition) {
                continue;
            }
            let eni = task
                .attachments()
                .iter()
                .filter(|a| a.r#type() == Some("ElasticNetworkInterface"))
                .flat_map(aws_sdk_ecs::types::Attachment::details)
                .filter(|kv| kv.name() == Some("privateIPv4Address"))
                .filter_map(|kv| kv.value());
            let containers = task
                .containers()
                .iter()
                .flat_map(aws_sdk_ecs::types::Container::network_interfaces)
                .filter_map(|n| n.private_ipv4_address());
            ips.extend(eni.chain(containers).map(str::to_owned));
        }
    }
    Ok(ips)
}

/// One probe measurement of the colour behind the preview rule. `Err` carries why it failed
/// (a breach, or a probe that could not run, which counts as a failure like on EKS).
async fn measure_once(
    target: &EcsTarget,
    spec: &ReleaseSpec,
    bearer_token: Option<probe::BearerToken>,
) -> Result<(), String> {
    let p = &spec.analysis.probe;
    let config = probe::ProbeConfig {
        url: format!("{}{}", target.preview_url.trim_end_matches('/'), p.path),
        requests: p.requests,
        concurrency: p.concurrency.max(1),
        timeout: Duration::from_millis(p.timeout_ms),
        bearer_token,
    };
    let thresholds = probe::Thresholds {
        p99_ms: p.p99_ms,
        max_error_rate: p.max_error_rate,
    };
    match probe::run(&config, thresholds).await {
        Ok(v) if v.passed => {
            tracing::info!(summary = %v.summary(), "measurement passed");
            Ok(())
        }
        Ok(v) => Err(v.summary()),
        Err(e) => Err(format!("probe could not run: {e}")),
    }
}

/// The analysis before promotion: `count` measurements, `interval` apart, after
/// `initialDelay`; more than `failureLimit` failures fail it.
async fn analyse(
    target: &EcsTarget,
    spec: &ReleaseSpec,
    bearer_token: Option<probe::BearerToken>,
) -> Result<(), String> {
    let a = &spec.analysis;
    tokio::time::sleep(Duration::from_secs(a.initial_delay_secs())).await;
    let mut failed = 0;
    for i in 0..a.count.max(1) {
        if i > 0 {
            tokio::time::sleep(Duration::from_secs(a.interval_secs())).await;
        }
        if let Err(why) = measure_once(target, spec, bearer_token.clone()).await {
            failed += 1;
            tracing::warn!(%why, failed, limit = a.failure_limit, "measurement failed");
            if failed > a.failure_limit {
                return Err(format!("analysis failed: {why}"));
            }
        }
    }
    Ok(())
}

/// Verification after promotion: one measurement every interval until `until`.
async fn verify_until(
    target: &EcsTarget,
    spec: &ReleaseSpec,
    bearer_token: Option<probe::BearerToken>,
    until: Instant,
) -> Result<(), String> {
    let a = &spec.analysis;
    let interval = Duration::from_secs(a.interval_secs());
    let mut failed = 0;
    while Instant::now() < until {
        let next = (Instant::now() + interval).min(until);
        if let Err(why) = measure_once(target, spec, bearer_token.clone()).await {
            failed += 1;
            tracing::warn!(%why, failed, limit = a.failure_limit, "verification failed");
            if failed > a.failure_limit {
                return Err(format!("verification failed: {why}"));
            }
        }
        tokio::time::sleep_until(next.into()).await;
    }
    Ok(())
}

async fn roll_back(
    clients: &Clients,
    target: &EcsTarget,
    spec: &ReleaseSpec,
    active: Colour,
    preview: Colour,
    reason: String,
) -> Result<Outcome, Error> {
    let scaled_down = spec.rollback_policy == RollbackPolicy::Revert;
    if scaled_down {
        if capacity(clients, target, preview).await?.is_some() {
            set_capacity(clients, target, preview, 0, 0).await?;
        }
        scale(clients, target, preview, 0).await?;
    }
    Ok(Outcome::RolledBack {
        active,
        reason,
        scaled_down,
    })
}

#[cfg(test)]
mod tests;
