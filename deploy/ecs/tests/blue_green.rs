//! `meridian-deploy ecs` end to end against a real ECS + ELBv2 API (moto's server): the calls
//! the command makes, and the state they leave, read back through the SDK.
//!
//! What moto does not do, and who plays it here (said plainly, because it is the part that is
//! not AWS):
//! - moto runs no service tasks, registers nothing in target groups and keeps no deployments
//!   (a service's one deployment is the one it was created with: UpdateService changes neither
//!   its task definition nor its counts, and `rolloutState` never moves). A stand-in for ECS's
//!   service scheduler and deployments ([`Ecs`]) starts a PRIMARY deployment when a service's
//!   task definition changes, runs its tasks with moto's RunTask (so DescribeTasks has them,
//!   with an ENI's private IP), registers exactly those IPs in the colour's target group (moto
//!   reports them `healthy`), and can play a crashing image that ECS's deployment circuit
//!   breaker rolls back; an interceptor on the ECS clients (the command's and its own) learns
//!   each service's task definition and desired count from CreateService's and UpdateService's
//!   answers and puts its deployments into DescribeServices. What real ECS decides (when a deployment fails, how long draining takes)
//!   is this stand-in's choice, not AWS's.
//! - moto's load balancers forward no traffic. The test listener's URL (`preview_url`) is a
//!   local axum server standing in for the green tasks, whose latency the test sets: it is what
//!   the probe measures.
//!
//! moto comes from PyPI; tests/run installs it and exports `MOTO_SERVER` (see
//! services/kit-aws/tests/secrets.rs). Without it these tests fail, naming the install; they
//! never skip.

use std::{
    net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream},
    path::PathBuf,
    process::{Child, Command, Stdio},
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use aws_sdk_applicationautoscaling::types::{ScalableDimension, ServiceNamespace};
use aws_sdk_ecs::types::{
    AwsVpcConfiguration, Compatibility, ContainerDefinition, DeploymentRolloutState, LaunchType,
    LoadBalancer, NetworkConfiguration, NetworkMode, PortMapping,
};
use aws_sdk_elasticloadbalancingv2::types::{
    Action, ActionTypeEnum, FixedResponseActionConfig, ProtocolEnum, RuleCondition,
    TargetDescription, TargetTypeEnum,
};
use deploy_ecs::{ByColour, Clients, EcsTarget, Outcome, Timing};
use operator::crd::Colour;

const REGION: &str = "eu-north-1";
const CLUSTER: &str = "meridian-prod-dk";
const OLD_IMAGE: &str =
    "123456789012.dkr.ecr.eu-north-1.amazonaws.com/meridian/meridian-streams:aaaaaaa";
const NEW_IMAGE: &str =
    "123456789012.dkr.ecr.eu-north-1.amazonaws.com/meridian/meridian-streams:bbbbbbb";
const SCALE_DOWN_DELAY: u64 = 3;

/// A moto server on a free port of 127.0.0.1, killed on drop.
struct Moto {
    child: Child,
    endpoint: String,
}

fn moto_server_path() -> PathBuf {
    let install = "python3 -m venv \"${MERIDIAN_CACHE:-$HOME/.cache/meridian}/moto-venv\" && \
                   \"${MERIDIAN_CACHE:-$HOME/.cache/meridian}/moto-venv/bin/pip\" install 'moto[server]' \
                   (tests/run does this), or set MOTO_SERVER to a moto_server binary";
    let path = match std::env::var_os("MOTO_SERVER") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => {
            let cache = std::env::var_os("MERIDIAN_CACHE")
                .filter(|c| !c.is_empty())
                .map_or_else(
                    || {
                        let home = std::env::var_os("HOME").unwrap_or_else(|| {
                            panic!("neither MOTO_SERVER nor HOME is set: {install}")
                        });
                        PathBuf::from(home).join(".cache/meridian")
                    },
                    PathBuf::from,
                );
            cache.join("moto-venv/bin/moto_server")
        }
    };
    assert!(
        path.is_file(),
        "moto_server not found at {}: these tests need moto's AWS emulator: {install}",
        path.display()
    );
    path
}

impl Moto {
    fn start() -> Self {
        let bin = moto_server_path();
        // moto_server cannot report a port it picked itself: take a free one, then hand it over.
        let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .and_then(|l| l.local_addr())
            .expect("pick a free port")
            .port();
        let mut child = Command::new(&bin)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", bin.display()));
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        let deadline = Instant::now() + Duration::from_mins(1);
        loop {
            if let Some(status) = child.try_wait().expect("poll moto_server") {
                panic!("moto_server exited before answering ({status}); port {port}");
            }
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "moto_server did not listen on {addr} within 60s"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        Self {
            child,
            endpoint: format!("http://{addr}"),
        }
    }

    /// Clients for this server: dummy credentials and region on the config builder (not in the
    /// process environment), through the command's own HTTPS client stack.
    async fn clients(&self) -> Clients {
        let config = deploy_ecs::sdk_config_loader()
            .endpoint_url(&self.endpoint)
            .region(aws_config::Region::new(REGION))
            .credentials_provider(aws_sdk_ecs::config::Credentials::new(
                "test", "test", None, None, "moto",
            ))
            .load()
            .await;
        Clients::new(&config)
    }

    /// One EC2 Query API call (moto routes it by the credential scope; it checks no signature),
    /// returning every `<tag>` value of the answer.
    async fn ec2_values(&self, action: &str, tag: &str) -> Vec<String> {
        let body = reqwest::Client::new()
            .post(&self.endpoint)
            .header(
                "authorization",
                format!(
                    "AWS4-HMAC-SHA256 Credential=test/20260101/{REGION}/ec2/aws4_request, \
                     SignedHeaders=host, Signature=0"
                ),
            )
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!("Action={action}&Version=2016-11-15"))
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .unwrap_or_else(|e| panic!("EC2 {action} on moto: {e}"))
            .text()
            .await
            .expect("EC2 answer");
        let open = format!("<{tag}>");
        body.split(&open)
            .skip(1)
            .filter_map(|rest| rest.split('<').next())
            .map(str::to_owned)
            .collect()
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn ok<T, E: std::error::Error + Send + Sync + 'static>(
    call: &str,
) -> impl FnOnce(Result<T, E>) -> T {
    let call = call.to_owned();
    move |r| {
        r.unwrap_or_else(|e| {
            panic!(
                "{call} on moto: {}",
                aws_sdk_ecs::error::DisplayErrorContext(e)
            )
        })
    }
}

/// The green tasks' stand-in: `GET /streams/v1/health` answers after `delay_ms`.
async fn green_server(delay_ms: Arc<AtomicU64>) -> String {
    let app = axum::Router::new().route(
        "/streams/v1/health",
        axum::routing::get(move || {
            let delay = delay_ms.load(Ordering::Relaxed);
            async move {
                tokio::time::sleep(Duration::from_millis(delay)).await;
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .await
        .expect("bind the green stand-in");
    let addr = listener.local_addr().expect("its address");
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}

/// What Terraform builds for one service (terraform/modules/ecs + alb), in moto: the cluster,
/// blue's task definition and service with its autoscaling range (2-6), both target groups, the
/// public listener's rule and the test listener's rule on blue, and (`with_green`) green's
/// service at 0 tasks pinned at 0; without it, a stack from before blue-green, where the first
/// release creates green's service.
async fn terraform_stack(
    moto: &Moto,
    clients: &Clients,
    preview_url: String,
    with_green: bool,
) -> EcsTarget {
    let vpc = moto.ec2_values("DescribeVpcs", "vpcId").await.remove(0);
    let subnets = moto.ec2_values("DescribeSubnets", "subnetId").await;
    let groups = moto.ec2_values("DescribeSecurityGroups", "groupId").await;
    assert!(
        subnets.len() >= 2 && !groups.is_empty(),
        "moto's default VPC"
    );

    ok("CreateCluster")(
        clients
            .ecs
            .create_cluster()
            .cluster_name(CLUSTER)
            .send()
            .await,
    );
    let td = ok("RegisterTaskDefinition")(
        clients
            .ecs
            .register_task_definition()
            .family(format!("{CLUSTER}-streams"))
            .requires_compatibilities(Compatibility::Fargate)
            .network_mode(NetworkMode::Awsvpc)
            .cpu("256")
            .memory("512")
            .execution_role_arn("arn:aws:iam::123456789012:role/meridian-prod-dk-streams-execution")
            .task_role_arn("arn:aws:iam::123456789012:role/meridian-prod-dk-streams-task")
            .container_definitions(
                ContainerDefinition::builder()
                    .name("streams")
                    .image(OLD_IMAGE)
                    // Container-level memory: moto's RunTask fails without it.
                    .memory(512)
                    .essential(true)
                    .readonly_root_filesystem(true)
                    .port_mappings(PortMapping::builder().container_port(8080).build())
                    .environment(
                        aws_sdk_ecs::types::KeyValuePair::builder()
                            .name("SERVICE_NAME")
                            .value("streams")
                            .build(),
                    )
                    .build(),
            )
            .send()
            .await,
    )
    .task_definition
    .and_then(|t| t.task_definition_arn)
    .expect("task definition ARN");

    let elb = &clients.elb;
    let lb = ok("CreateLoadBalancer")(
        elb.create_load_balancer()
            .name("meridian-prod-dk")
            .set_subnets(Some(subnets[..2].to_vec()))
            .send()
            .await,
    )
    .load_balancers()[0]
        .load_balancer_arn()
        .expect("LB ARN")
        .to_owned();
    let mut tgs = Vec::new();
    for colour in ["blue", "green"] {
        let out = ok("CreateTargetGroup")(
            elb.create_target_group()
                .name(format!("meridian-prod-dk-streams-{colour}"))
                .protocol(ProtocolEnum::Http)
                .port(8080)
                .vpc_id(&vpc)
                .target_type(TargetTypeEnum::Ip)
                .health_check_path("/streams/v1/health")
                .send()
                .await,
        );
        tgs.push(
            out.target_groups()[0]
                .target_group_arn()
                .expect("TG ARN")
                .to_owned(),
        );
    }
    let target_groups = ByColour {
        blue: tgs[0].clone(),
        green: tgs[1].clone(),
    };
    let mut rules = Vec::new();
    for port in [443, 8443] {
        let listener = ok("CreateListener")(
            elb.create_listener()
                .load_balancer_arn(&lb)
                .protocol(ProtocolEnum::Http)
                .port(port)
                .default_actions(
                    Action::builder()
                        .r#type(ActionTypeEnum::FixedResponse)
                        .fixed_response_config(
                            FixedResponseActionConfig::builder()
                                .status_code("404")
                                .build(),
                        )
                        .build(),
                )
                .send()
                .await,
        )
        .listeners()[0]
            .listener_arn()
            .expect("listener ARN")
            .to_owned();
        let rule = ok("CreateRule")(
            elb.create_rule()
                .listener_arn(&listener)
                .priority(100)
                .conditions(
                    RuleCondition::builder()
                        .field("path-pattern")
                        .values("/streams/*")
                        .build(),
                )
                .actions(
                    Action::builder()
                        .r#type(ActionTypeEnum::Forward)
                        .target_group_arn(&target_groups.blue)
                        .build(),
                )
                .send()
                .await,
        )
        .rules()[0]
            .rule_arn()
            .expect("rule ARN")
            .to_owned();
        rules.push(rule);
    }

    create_service(
        clients,
        "streams-blue",
        &td,
        &target_groups.blue,
        &subnets,
        &groups[0],
    )
    .await;

    let colours: &[(&str, &str, i32, i32)] = if with_green {
        &[
            ("streams-blue", &target_groups.blue, 2, 6),
            ("streams-green", &target_groups.green, 0, 0),
        ]
    } else {
        &[("streams-blue", &target_groups.blue, 2, 6)]
    };
    for &(name, tg, min, max) in colours {
        if name == "streams-green" {
            create_service(clients, name, &td, tg, &subnets, &groups[0]).await;
        }
        ok("RegisterScalableTarget")(
            clients
                .autoscaling
                .register_scalable_target()
                .service_namespace(ServiceNamespace::Ecs)
                .scalable_dimension(ScalableDimension::EcsServiceDesiredCount)
                .resource_id(format!("service/{CLUSTER}/{name}"))
                .min_capacity(min)
                .max_capacity(max)
                .send()
                .await,
        );
    }

    EcsTarget {
        cluster: CLUSTER.to_owned(),
        services: ByColour {
            blue: "streams-blue".to_owned(),
            green: "streams-green".to_owned(),
        },
        target_groups,
        listener_rule_arn: rules[0].clone(),
        preview_listener_rule_arn: rules[1].clone(),
        preview_url,
        // Without it, the command copies blue's range (2-6): what the assertions expect.
        capacity: None,
    }
}

/// An ECS service as terraform/modules/ecs declares one (blue with 2 tasks, green with 0).
async fn create_service(
    clients: &Clients,
    name: &str,
    td: &str,
    tg: &str,
    subnets: &[String],
    group: &str,
) {
    ok("CreateService")(
        clients
            .ecs
            .create_service()
            .cluster(CLUSTER)
            .service_name(name)
            .task_definition(td)
            .desired_count(if name == "streams-blue" { 2 } else { 0 })
            .launch_type(LaunchType::Fargate)
            .network_configuration(
                NetworkConfiguration::builder()
                    .awsvpc_configuration(
                        AwsVpcConfiguration::builder()
                            .set_subnets(Some(subnets[..2].to_vec()))
                            .security_groups(group)
                            .build()
                            .expect("awsvpc"),
                    )
                    .build(),
            )
            .load_balancers(
                LoadBalancer::builder()
                    .target_group_arn(tg)
                    .container_name("streams")
                    .container_port(8080)
                    .build(),
            )
            .send()
            .await,
    );
}

/// How the stand-in ECS behaves.
#[derive(Default, Clone)]
struct EcsBehaviour {
    /// Tasks of a task definition with this image exit at start: its deployment fails after
    /// [`CRASH_AFTER`] and, as ECS's deployment circuit breaker with `rollback = true` does
    /// (terraform/modules/ecs), the service is put back on the last completed deployment's
    /// task definition.
    crashing_image: Option<String>,
    /// How long a new deployment's tasks take to start.
    start_delay: Duration,
    /// How long the tasks of a replaced deployment stay registered (and healthy) after the new
    /// deployment has all its tasks: ECS's deregistration delay.
    drain: Duration,
    /// While green's target group holds a task whose image is not `.0`, the green stand-in
    /// (`.1`) answers in 300 ms, else in 5 ms: the ALB forwards to every healthy target.
    slow_unless: Option<(String, Arc<AtomicU64>)>,
}

const CRASH_AFTER: Duration = Duration::from_secs(1);

#[derive(Debug)]
struct FakeTask {
    arn: String,
    ip: String,
}

#[derive(Debug)]
struct FakeDeployment {
    id: String,
    task_definition: String,
    primary: bool,
    desired: i32,
    state: DeploymentRolloutState,
    reason: String,
    created: Instant,
    completed: Option<Instant>,
    tasks: Vec<FakeTask>,
}

/// ECS's deployments and service scheduler, which moto lacks: moto keeps the one deployment a
/// service was created with (its task definition never changes on UpdateService, its
/// runningCount is an environment variable's) and runs no service tasks.
#[derive(Default)]
struct FakeEcs {
    behaviour: EcsBehaviour,
    /// Deployments per service name, in the order ECS started them.
    services: std::collections::HashMap<String, Vec<FakeDeployment>>,
    images: std::collections::HashMap<String, String>,
    /// Per service, the task definition of its last deployment that completed: where the
    /// circuit breaker rolls back to.
    last_completed: std::collections::HashMap<String, String>,
    next_id: u32,
}

impl FakeEcs {
    /// What ECS does when a service's task definition changes: a new PRIMARY deployment.
    fn observe(&mut self, service: &str, task_definition: &str, desired: i32) {
        self.next_id += 1;
        let id = format!("ecs-svc/{}", self.next_id);
        let deployments = self.services.entry(service.to_owned()).or_default();
        let current = deployments.iter().find(|d| d.primary);
        if current.is_none_or(|d| d.task_definition != task_definition) {
            for d in deployments.iter_mut() {
                d.primary = false;
            }
            deployments.push(FakeDeployment {
                id,
                task_definition: task_definition.to_owned(),
                primary: true,
                desired,
                state: DeploymentRolloutState::InProgress,
                reason: String::new(),
                created: Instant::now(),
                completed: None,
                tasks: Vec::new(),
            });
        }
        if let Some(d) = deployments.iter_mut().find(|d| d.primary) {
            d.desired = desired;
        }
    }

    /// DescribeServices as ECS answers it: this state's deployments and running count. A
    /// service's task definition and desired count are taken from here only the first time it
    /// is seen; after that only from CreateService's and UpdateService's answers (in the order
    /// of the calls), since a DescribeServices sent before an UpdateService may be answered
    /// after it.
    fn rewrite(&mut self, service: &mut aws_sdk_ecs::types::Service) {
        let (Some(name), Some(td)) = (
            service.service_name.clone(),
            service.task_definition.clone(),
        ) else {
            return;
        };
        if service.status() != Some("ACTIVE") {
            return;
        }
        if !self.services.contains_key(&name) {
            self.observe(&name, &td, service.desired_count);
        }
        let deployments = &self.services[&name];
        service.running_count = deployments.iter().map(|d| task_count(&d.tasks)).sum();
        service.deployments = Some(
            deployments
                .iter()
                .map(|d| {
                    aws_sdk_ecs::types::Deployment::builder()
                        .id(&d.id)
                        .status(if d.primary { "PRIMARY" } else { "ACTIVE" })
                        .task_definition(&d.task_definition)
                        .desired_count(if d.primary { d.desired } else { 0 })
                        .running_count(task_count(&d.tasks))
                        .rollout_state(d.state.clone())
                        .rollout_state_reason(&d.reason)
                        .build()
                })
                .collect(),
        );
    }
}

fn task_count(tasks: &[FakeTask]) -> i32 {
    i32::try_from(tasks.len()).expect("a few tasks")
}

/// Puts [`FakeEcs`]'s deployments into the DescribeServices answers of the clients the command
/// gets (the deployments are the only thing changed; everything else is moto's answer).
#[derive(Clone)]
struct Deployments(Arc<std::sync::Mutex<FakeEcs>>);

impl std::fmt::Debug for Deployments {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Deployments")
    }
}

impl aws_sdk_ecs::config::Intercept for Deployments {
    fn name(&self) -> &'static str {
        "FakeEcsDeployments"
    }

    fn modify_before_attempt_completion(
        &self,
        context: &mut aws_sdk_ecs::config::interceptors::FinalizerInterceptorContextMut<'_>,
        _: &aws_sdk_ecs::config::RuntimeComponents,
        _: &mut aws_sdk_ecs::config::ConfigBag,
    ) -> Result<(), aws_sdk_ecs::error::BoxError> {
        use aws_sdk_ecs::operation::{
            create_service::CreateServiceOutput, describe_services::DescribeServicesOutput,
            update_service::UpdateServiceOutput,
        };
        let Some(Ok(out)) = context.output_or_error_mut() else {
            return Ok(());
        };
        let mut ecs = self.0.lock().expect("fake ECS");
        if let Some(out) = out.downcast_mut::<DescribeServicesOutput>() {
            for service in out.services.iter_mut().flatten() {
                ecs.rewrite(service);
            }
            return Ok(());
        }
        let changed = if let Some(out) = out.downcast_ref::<UpdateServiceOutput>() {
            out.service()
        } else if let Some(out) = out.downcast_ref::<CreateServiceOutput>() {
            out.service()
        } else {
            None
        };
        if let Some(service) = changed
            && let (Some(name), Some(td)) = (service.service_name(), service.task_definition())
        {
            ecs.observe(name, td, service.desired_count());
        }
        Ok(())
    }
}

/// The stand-in ECS: its state, the scheduler's task, and clients whose DescribeServices shows
/// its deployments.
struct Ecs {
    state: Arc<std::sync::Mutex<FakeEcs>>,
    scheduler: tokio::task::JoinHandle<()>,
}

impl Ecs {
    async fn start(moto: &Moto, target: EcsTarget, behaviour: EcsBehaviour) -> Self {
        let state = Arc::new(std::sync::Mutex::new(FakeEcs {
            behaviour,
            ..FakeEcs::default()
        }));
        let clients = Self::clients_for(moto, &state).await;
        let scheduler = tokio::spawn(schedule(clients, target, state.clone()));
        Self { state, scheduler }
    }

    /// Clients for the command: moto's, with ECS's deployments in DescribeServices.
    async fn clients(&self, moto: &Moto) -> Clients {
        Self::clients_for(moto, &self.state).await
    }

    async fn clients_for(moto: &Moto, state: &Arc<std::sync::Mutex<FakeEcs>>) -> Clients {
        let plain = moto.clients().await;
        let ecs_config = plain
            .ecs
            .config()
            .to_builder()
            .interceptor(Deployments(state.clone()))
            .build();
        Clients {
            ecs: aws_sdk_ecs::Client::from_conf(ecs_config),
            ..plain
        }
    }
}

impl Drop for Ecs {
    fn drop(&mut self) {
        self.scheduler.abort();
    }
}

/// Plays ECS's service scheduler every 100 ms, for each colour: a changed task definition
/// starts a new PRIMARY deployment ([`FakeEcs::observe`]), whose tasks it starts with moto's
/// RunTask (Fargate, the service's network: each gets an ENI and a private IP) up to the
/// desiredCount after `start_delay`, and whose completion stops the older deployments' tasks
/// after `drain`; each colour's target group holds exactly the IPs of its service's tasks
/// (RegisterTargets, which moto reports `healthy`). A crashing image runs no task and fails.
async fn schedule(clients: Clients, target: EcsTarget, state: Arc<std::sync::Mutex<FakeEcs>>) {
    loop {
        for colour in [Colour::Blue, Colour::Green] {
            schedule_colour(&clients, &target, &state, colour).await;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[allow(clippy::too_many_lines)]
async fn schedule_colour(
    clients: &Clients,
    target: &EcsTarget,
    state: &Arc<std::sync::Mutex<FakeEcs>>,
    colour: Colour,
) {
    let name = target.services.get(colour);
    let described = ok("DescribeServices")(
        clients
            .ecs
            .describe_services()
            .cluster(&target.cluster)
            .services(name)
            .send()
            .await,
    );
    let service = described
        .services()
        .iter()
        .find(|s| s.status() == Some("ACTIVE"))
        .cloned();
    if let Some(service) = &service {
        let td = service
            .task_definition()
            .expect("a task definition")
            .to_owned();
        let known = state.lock().expect("fake ECS").images.contains_key(&td);
        if !known {
            let def = ok("DescribeTaskDefinition")(
                clients
                    .ecs
                    .describe_task_definition()
                    .task_definition(&td)
                    .send()
                    .await,
            )
            .task_definition
            .expect("definition");
            let image = def.container_definitions()[0]
                .image()
                .expect("an image")
                .to_owned();
            state.lock().expect("fake ECS").images.insert(td, image);
        }
    }

    // Decide under the lock, call moto without it.
    let mut stop = Vec::new();
    let mut run: Option<(String, String, i32)> = None;
    let mut roll_back_to = None;
    let mut failed = None;
    {
        let mut ecs = state.lock().expect("fake ECS");
        if let Some(service) = &service
            && !ecs.services.contains_key(name)
        {
            ecs.observe(
                name,
                service.task_definition().expect("a task definition"),
                service.desired_count(),
            );
        }
        let crashing = ecs.behaviour.crashing_image.clone();
        let start_delay = ecs.behaviour.start_delay;
        let drain = ecs.behaviour.drain;
        let images = ecs.images.clone();
        let mut completed = None;
        let deployments = ecs.services.entry(name.to_owned()).or_default();
        if service.is_none() {
            for d in deployments.iter_mut() {
                stop.extend(d.tasks.drain(..).map(|t| t.arn));
            }
        }
        let last_completed = ecs.last_completed.get(name).cloned();
        let deployments = ecs.services.entry(name.to_owned()).or_default();
        let mut primary_done = None;
        if let Some(p) = deployments.iter_mut().find(|d| d.primary)
            && service.is_some()
        {
            let image = images.get(&p.task_definition);
            if crashing.is_some() && image == crashing.as_ref() {
                if p.state == DeploymentRolloutState::InProgress
                    && p.created.elapsed() >= CRASH_AFTER
                {
                    // As ECS: the service goes back to the last completed revision (a new
                    // PRIMARY deployment), this one is marked FAILED.
                    failed = Some(p.id.clone());
                    roll_back_to = last_completed.filter(|td| *td != p.task_definition);
                }
            } else if p.created.elapsed() >= start_delay {
                let have = task_count(&p.tasks);
                if have < p.desired {
                    run = Some((p.id.clone(), p.task_definition.clone(), p.desired - have));
                } else {
                    while task_count(&p.tasks) > p.desired {
                        stop.push(p.tasks.pop().expect("a task").arn);
                    }
                    if p.completed.is_none() {
                        p.completed = Some(Instant::now());
                        p.state = DeploymentRolloutState::Completed;
                        completed = Some(p.task_definition.clone());
                    }
                }
            }
            primary_done = p.completed;
        }
        if primary_done.is_some_and(|at| at.elapsed() >= drain) {
            for d in deployments.iter_mut().filter(|d| !d.primary) {
                stop.extend(d.tasks.drain(..).map(|t| t.arn));
            }
        }
        // Drained deployments leave the list; a failed one stays visible.
        deployments.retain(|d| {
            d.primary
                || !d.tasks.is_empty()
                || d.state == DeploymentRolloutState::Failed
                || failed.as_ref() == Some(&d.id)
        });
        if let Some(td) = completed {
            ecs.last_completed.insert(name.to_owned(), td);
        }
    }

    for arn in stop {
        ok("StopTask")(
            clients
                .ecs
                .stop_task()
                .cluster(&target.cluster)
                .task(arn)
                .send()
                .await,
        );
    }
    if let (Some((id, td, count)), Some(service)) = (run, &service) {
        let network = service
            .network_configuration()
            .cloned()
            .expect("the service's network");
        let started = ok("RunTask")(
            clients
                .ecs
                .run_task()
                .cluster(&target.cluster)
                .task_definition(&td)
                .count(count)
                .launch_type(LaunchType::Fargate)
                .network_configuration(network)
                .group(format!("service:{name}"))
                .started_by(&id)
                .send()
                .await,
        );
        let tasks: Vec<FakeTask> = started
            .tasks()
            .iter()
            .map(|t| FakeTask {
                arn: t.task_arn().expect("task ARN").to_owned(),
                ip: t
                    .attachments()
                    .iter()
                    .flat_map(aws_sdk_ecs::types::Attachment::details)
                    .find(|kv| kv.name() == Some("privateIPv4Address"))
                    .and_then(|kv| kv.value())
                    .expect("moto gives a Fargate task an ENI with a private IP")
                    .to_owned(),
            })
            .collect();
        let mut ecs = state.lock().expect("fake ECS");
        if let Some(d) = ecs
            .services
            .get_mut(name)
            .and_then(|ds| ds.iter_mut().find(|d| d.id == id))
        {
            d.tasks.extend(tasks);
        }
    }
    if let Some(td) = roll_back_to {
        ok("UpdateService")(
            clients
                .ecs
                .update_service()
                .cluster(&target.cluster)
                .service(name)
                .task_definition(td)
                .send()
                .await,
        );
    }
    if let Some(id) = failed {
        let mut ecs = state.lock().expect("fake ECS");
        if let Some(d) = ecs
            .services
            .get_mut(name)
            .and_then(|ds| ds.iter_mut().find(|d| d.id == id))
        {
            d.state = DeploymentRolloutState::Failed;
            d.reason = "ECS deployment circuit breaker: tasks failed to start.".into();
        }
    }

    // The target group holds the service's tasks.
    let (want, slow): (Vec<TargetDescription>, Option<(bool, Arc<AtomicU64>)>) = {
        let ecs = state.lock().expect("fake ECS");
        let deployments = ecs.services.get(name);
        let want = deployments
            .into_iter()
            .flatten()
            .flat_map(|d| &d.tasks)
            .map(|t| TargetDescription::builder().id(&t.ip).port(8080).build())
            .collect();
        let slow = ecs.behaviour.slow_unless.as_ref().map(|(image, delay)| {
            let other = deployments
                .into_iter()
                .flatten()
                .any(|d| !d.tasks.is_empty() && ecs.images.get(&d.task_definition) != Some(image));
            (other, delay.clone())
        });
        (want, slow)
    };
    let tg = target.target_groups.get(colour);
    let have: Vec<TargetDescription> = ok("DescribeTargetHealth")(
        clients
            .elb
            .describe_target_health()
            .target_group_arn(tg)
            .send()
            .await,
    )
    .target_health_descriptions()
    .iter()
    .filter_map(|d| d.target().cloned())
    .collect();
    let extra: Vec<TargetDescription> =
        have.iter().filter(|t| !want.contains(t)).cloned().collect();
    let missing: Vec<TargetDescription> =
        want.iter().filter(|t| !have.contains(t)).cloned().collect();
    if !missing.is_empty() {
        ok("RegisterTargets")(
            clients
                .elb
                .register_targets()
                .target_group_arn(tg)
                .set_targets(Some(missing))
                .send()
                .await,
        );
    }
    if !extra.is_empty() {
        ok("DeregisterTargets")(
            clients
                .elb
                .deregister_targets()
                .target_group_arn(tg)
                .set_targets(Some(extra))
                .send()
                .await,
        );
    }
    if colour == Colour::Green
        && let Some((other, delay)) = slow
    {
        delay.store(if other { 300 } else { 5 }, Ordering::Relaxed);
    }
}

/// The service's desiredCount, `None` when it does not exist (or is INACTIVE).
async fn desired_count(clients: &Clients, target: &EcsTarget, colour: Colour) -> Option<i32> {
    let out = ok("DescribeServices")(
        clients
            .ecs
            .describe_services()
            .cluster(&target.cluster)
            .services(target.services.get(colour))
            .send()
            .await,
    );
    out.services()
        .iter()
        .find(|s| s.status() == Some("ACTIVE"))
        .map(aws_sdk_ecs::types::Service::desired_count)
}

/// What `terraform apply` does to the family when modules/ecs changes a setting: a new
/// revision (2) like the first with one more environment variable, services left as they are.
async fn terraform_changes_the_task_definition(clients: &Clients) {
    let family = format!("{CLUSTER}-streams");
    let first = ok("DescribeTaskDefinition")(
        clients
            .ecs
            .describe_task_definition()
            .task_definition(&family)
            .send()
            .await,
    )
    .task_definition
    .expect("definition");
    let mut containers = first.container_definitions().to_vec();
    containers[0].environment.get_or_insert_with(Vec::new).push(
        aws_sdk_ecs::types::KeyValuePair::builder()
            .name("LOG_LEVEL")
            .value("debug")
            .build(),
    );
    let out = ok("RegisterTaskDefinition")(
        clients
            .ecs
            .register_task_definition()
            .family(&family)
            .set_requires_compatibilities(Some(first.requires_compatibilities().to_vec()))
            .set_network_mode(first.network_mode().cloned())
            .set_cpu(first.cpu().map(str::to_owned))
            .set_memory(first.memory().map(str::to_owned))
            .set_execution_role_arn(first.execution_role_arn().map(str::to_owned))
            .set_task_role_arn(first.task_role_arn().map(str::to_owned))
            .set_container_definitions(Some(containers))
            .send()
            .await,
    );
    let arn = out
        .task_definition
        .and_then(|t| t.task_definition_arn)
        .expect("ARN");
    assert!(arn.ends_with(":2"), "{arn}");
}

/// A task definition's first container's environment.
async fn environment(clients: &Clients, task_definition: &str) -> Vec<(String, String)> {
    let def = ok("DescribeTaskDefinition")(
        clients
            .ecs
            .describe_task_definition()
            .task_definition(task_definition)
            .send()
            .await,
    )
    .task_definition
    .expect("definition");
    def.container_definitions()[0]
        .environment()
        .iter()
        .map(|kv| {
            (
                kv.name().unwrap_or_default().to_owned(),
                kv.value().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

async fn service_image(clients: &Clients, target: &EcsTarget, colour: Colour) -> String {
    let out = ok("DescribeServices")(
        clients
            .ecs
            .describe_services()
            .cluster(&target.cluster)
            .services(target.services.get(colour))
            .send()
            .await,
    );
    let td = out.services()[0]
        .task_definition()
        .expect("a task definition")
        .to_owned();
    let def = ok("DescribeTaskDefinition")(
        clients
            .ecs
            .describe_task_definition()
            .task_definition(&td)
            .send()
            .await,
    )
    .task_definition
    .expect("definition");
    def.container_definitions()
        .iter()
        .find(|c| c.name() == Some("streams"))
        .and_then(|c| c.image())
        .expect("the streams container")
        .to_owned()
}

/// The Release `buildkite/lib.sh render_release` writes, with this test's timings: a 3 s
/// scale-down delay, measurements every second, p99 at most 200 ms (the stand-in answers in
/// 5 ms, or 300 ms to breach; 2 cores running 8 moto servers at once have pushed a 5 ms p99
/// past 100 ms).
fn spec() -> operator::crd::ReleaseSpec {
    deploy_ecs::release_spec_from_manifest(&format!(
        r"
apiVersion: meridian.dev/v1alpha1
kind: Release
metadata:
  name: streams
  namespace: meridian
spec:
  service: streams
  image: {NEW_IMAGE}
  replicas: 2
  activeService: streams
  previewService: streams-preview
  scaleDownDelaySeconds: {SCALE_DOWN_DELAY}
  progressDeadlineSeconds: 60
  analysis:
    interval: 1s
    count: 2
    probe:
      path: /streams/v1/health
      requests: 20
      concurrency: 2
      timeoutMs: 2000
      p99Ms: 200
      maxErrorRate: 0.0
"
    ))
    .expect("the test's Release")
}

/// Samples the production rule and blue's desiredCount every 50 ms: when production first
/// forwarded to green, and when blue first had 0 tasks wanted.
struct Watch {
    green_at: Option<Instant>,
    blue_zero_at: Option<Instant>,
}

fn watch(clients: Clients, target: EcsTarget) -> Arc<std::sync::Mutex<Watch>> {
    let seen = Arc::new(std::sync::Mutex::new(Watch {
        green_at: None,
        blue_zero_at: None,
    }));
    let out = seen.clone();
    tokio::spawn(async move {
        loop {
            let tg = deploy_ecs::forwarded_target_group(&clients, &target.listener_rule_arn)
                .await
                .expect("the production rule");
            let blue = desired_count(&clients, &target, Colour::Blue).await;
            {
                let mut w = seen.lock().expect("watch lock");
                if tg == target.target_groups.green && w.green_at.is_none() {
                    w.green_at = Some(Instant::now());
                }
                if blue == Some(0) && w.blue_zero_at.is_none() {
                    w.blue_zero_at = Some(Instant::now());
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    out
}

fn fast() -> Timing {
    Timing {
        health_poll: Duration::from_millis(200),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_healthy_green_takes_production_and_blue_scales_to_zero_after_the_delay() {
    let moto = Moto::start();
    let clients = moto.clients().await;
    let delay = Arc::new(AtomicU64::new(5));
    let mut target = terraform_stack(&moto, &clients, green_server(delay).await, true).await;
    // Terraform's sizing changed since blue was promoted: the promoted colour gets the new range.
    target.capacity = Some(deploy_ecs::Capacity { min: 3, max: 8 });
    // And its task definition: Terraform registered revision 2 with a new setting, which the
    // running services ignore (ignore_changes); the release carries it.
    terraform_changes_the_task_definition(&clients).await;
    let ecs = Ecs::start(&moto, target.clone(), EcsBehaviour::default()).await;
    let clients = ecs.clients(&moto).await;
    let seen = watch(moto.clients().await, target.clone());

    let outcome = deploy_ecs::deploy(&clients, &target, &spec(), None, fast())
        .await
        .expect("the deploy runs");
    drop(ecs);

    let Outcome::Promoted {
        active,
        task_definition,
    } = outcome
    else {
        panic!("expected a promotion, got {outcome:?}");
    };
    assert_eq!(active, Colour::Green);
    assert!(
        task_definition.contains(&format!("{CLUSTER}-streams:3")),
        "{task_definition}"
    );
    let green_env = environment(&clients, &task_definition).await;
    assert!(
        green_env.contains(&("LOG_LEVEL".to_owned(), "debug".to_owned())),
        "Terraform's revision 2 is the base of the release: {green_env:?}"
    );
    // Through the SDK: production forwards to green, the preview rule too, green runs the new
    // image with 2 tasks wanted, blue 0, and blue still runs the old image (rollback target).
    assert_eq!(
        deploy_ecs::forwarded_target_group(&clients, &target.listener_rule_arn)
            .await
            .unwrap(),
        target.target_groups.green
    );
    assert_eq!(
        deploy_ecs::forwarded_target_group(&clients, &target.preview_listener_rule_arn)
            .await
            .unwrap(),
        target.target_groups.green
    );
    assert_eq!(
        desired_count(&clients, &target, Colour::Green).await,
        Some(2)
    );
    assert_eq!(
        desired_count(&clients, &target, Colour::Blue).await,
        Some(0)
    );
    assert_eq!(
        service_image(&clients, &target, Colour::Green).await,
        NEW_IMAGE
    );
    assert_eq!(
        service_image(&clients, &target, Colour::Blue).await,
        OLD_IMAGE
    );
    // Autoscaling follows production: green has Terraform's range, the idle colour is pinned at 0.
    assert_eq!(
        deploy_ecs::capacity(&clients, &target, Colour::Green)
            .await
            .unwrap(),
        Some((3, 8))
    );
    assert_eq!(
        deploy_ecs::capacity(&clients, &target, Colour::Blue)
            .await
            .unwrap(),
        Some((0, 0))
    );
    // Blue kept its tasks for the whole scale-down delay after the switch.
    let (green_at, zero_at) = {
        let w = seen.lock().expect("watch");
        (
            w.green_at.expect("the watcher saw production on green"),
            w.blue_zero_at.expect("the watcher saw blue scaled to 0"),
        )
    };
    assert!(
        zero_at.duration_since(green_at) >= Duration::from_millis(SCALE_DOWN_DELAY * 1000 - 100),
        "blue was scaled down {:?} after the switch, before the {SCALE_DOWN_DELAY}s delay",
        zero_at.duration_since(green_at)
    );

    // A second run of the same Release changes nothing: green already runs the image.
    let again = deploy_ecs::deploy(&clients, &target, &spec(), None, fast())
        .await
        .expect("the rerun");
    assert_eq!(
        again,
        Outcome::AlreadyActive {
            active: Colour::Green,
            finished: false
        }
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_breach_after_the_switch_puts_production_back_on_blue_and_green_to_zero() {
    let moto = Moto::start();
    let clients = moto.clients().await;
    let delay = Arc::new(AtomicU64::new(5));
    let target = terraform_stack(&moto, &clients, green_server(delay.clone()).await, true).await;
    let ecs = Ecs::start(&moto, target.clone(), EcsBehaviour::default()).await;
    let clients = ecs.clients(&moto).await;
    let seen = watch(moto.clients().await, target.clone());
    // Green passes its analysis; once production is on it, it slows to 300 ms (p99 > 200 ms).
    let slow = {
        let seen = seen.clone();
        tokio::spawn(async move {
            loop {
                if seen.lock().expect("watch").green_at.is_some() {
                    delay.store(300, Ordering::Relaxed);
                    return;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };

    let outcome = deploy_ecs::deploy(&clients, &target, &spec(), None, fast())
        .await
        .expect("the deploy runs");
    drop(ecs);
    slow.abort();

    let Outcome::RolledBack {
        active,
        reason,
        scaled_down,
    } = outcome
    else {
        panic!("expected a rollback, got {outcome:?}");
    };
    assert_eq!(active, Colour::Blue);
    assert!(scaled_down);
    assert!(reason.starts_with("verification failed"), "{reason}");
    assert!(
        seen.lock().expect("watch").green_at.is_some(),
        "production had moved to green"
    );
    assert_eq!(
        deploy_ecs::forwarded_target_group(&clients, &target.listener_rule_arn)
            .await
            .unwrap(),
        target.target_groups.blue,
        "production is back on blue"
    );
    assert_eq!(
        desired_count(&clients, &target, Colour::Green).await,
        Some(0)
    );
    assert_eq!(
        desired_count(&clients, &target, Colour::Blue).await,
        Some(2)
    );
    assert_eq!(
        service_image(&clients, &target, Colour::Blue).await,
        OLD_IMAGE
    );
    // Autoscaling follows production: the idle colour is pinned at 0.
    assert_eq!(
        deploy_ecs::capacity(&clients, &target, Colour::Green)
            .await
            .unwrap(),
        Some((0, 0))
    );
    assert_eq!(
        deploy_ecs::capacity(&clients, &target, Colour::Blue)
            .await
            .unwrap(),
        Some((2, 6))
    );
    assert!(
        seen.lock().expect("watch").blue_zero_at.is_none(),
        "blue was never scaled down"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_breach_in_the_analysis_never_moves_production_and_scales_green_to_zero() {
    let moto = Moto::start();
    let clients = moto.clients().await;
    let delay = Arc::new(AtomicU64::new(300));
    let target = terraform_stack(&moto, &clients, green_server(delay).await, false).await;
    let ecs = Ecs::start(&moto, target.clone(), EcsBehaviour::default()).await;
    let clients = ecs.clients(&moto).await;
    let seen = watch(moto.clients().await, target.clone());

    let outcome = deploy_ecs::deploy(&clients, &target, &spec(), None, fast())
        .await
        .expect("the deploy runs");
    drop(ecs);

    let Outcome::RolledBack { active, reason, .. } = outcome else {
        panic!("expected a rollback, got {outcome:?}");
    };
    assert_eq!(active, Colour::Blue);
    assert!(
        reason.starts_with("analysis failed") && reason.contains("p99"),
        "{reason}"
    );
    assert!(
        seen.lock().expect("watch").green_at.is_none(),
        "production never saw green"
    );
    assert_eq!(
        deploy_ecs::forwarded_target_group(&clients, &target.listener_rule_arn)
            .await
            .unwrap(),
        target.target_groups.blue
    );
    assert_eq!(
        desired_count(&clients, &target, Colour::Green).await,
        Some(0)
    );
    assert_eq!(
        desired_count(&clients, &target, Colour::Blue).await,
        Some(2)
    );
    // Autoscaling follows production: the idle colour is pinned at 0.
    assert_eq!(
        deploy_ecs::capacity(&clients, &target, Colour::Green)
            .await
            .unwrap(),
        Some((0, 0))
    );
    assert_eq!(
        deploy_ecs::capacity(&clients, &target, Colour::Blue)
            .await
            .unwrap(),
        Some((2, 6))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn green_that_never_gets_healthy_targets_fails_at_the_progress_deadline() {
    let moto = Moto::start();
    let clients = moto.clients().await;
    let target = terraform_stack(
        &moto,
        &clients,
        green_server(Arc::new(AtomicU64::new(5))).await,
        false,
    )
    .await;
    // No scheduler: nothing is ever registered in green's target group.
    let mut spec = spec();
    spec.progress_deadline_seconds = 2;
    let e = deploy_ecs::deploy(&clients, &target, &spec, None, fast())
        .await
        .expect_err("no healthy targets");
    assert!(matches!(e, deploy_ecs::Error::Deadline { .. }), "{e}");
    assert_eq!(
        desired_count(&clients, &target, Colour::Green).await,
        Some(0)
    );
    // Revert: green's range no longer pinned at the preview's count, else target tracking
    // would bring its tasks back.
    assert_eq!(range(&clients, &target, Colour::Green).await, Some((0, 0)));
    assert_eq!(range(&clients, &target, Colour::Blue).await, Some((2, 6)));
    assert_eq!(
        deploy_ecs::forwarded_target_group(&clients, &target.listener_rule_arn)
            .await
            .unwrap(),
        target.target_groups.blue
    );
}

/// A revision of the stack's task definition family on `image` (what an earlier run
/// registered).
async fn register_image(clients: &Clients, image: &str) -> String {
    ok("RegisterTaskDefinition")(
        clients
            .ecs
            .register_task_definition()
            .family(format!("{CLUSTER}-streams"))
            .requires_compatibilities(Compatibility::Fargate)
            .network_mode(NetworkMode::Awsvpc)
            .cpu("256")
            .memory("512")
            .container_definitions(
                ContainerDefinition::builder()
                    .name("streams")
                    .image(image)
                    .memory(512)
                    .essential(true)
                    .port_mappings(PortMapping::builder().container_port(8080).build())
                    .build(),
            )
            .send()
            .await,
    )
    .task_definition
    .and_then(|t| t.task_definition_arn)
    .expect("task definition ARN")
}

async fn set_range(clients: &Clients, colour: Colour, min: i32, max: i32) {
    let name = match colour {
        Colour::Blue => "streams-blue",
        Colour::Green => "streams-green",
    };
    ok("RegisterScalableTarget")(
        clients
            .autoscaling
            .register_scalable_target()
            .service_namespace(ServiceNamespace::Ecs)
            .scalable_dimension(ScalableDimension::EcsServiceDesiredCount)
            .resource_id(format!("service/{CLUSTER}/{name}"))
            .min_capacity(min)
            .max_capacity(max)
            .send()
            .await,
    );
}

async fn update_service(clients: &Clients, colour: Colour, td: Option<&str>, desired: i32) {
    let name = match colour {
        Colour::Blue => "streams-blue",
        Colour::Green => "streams-green",
    };
    ok("UpdateService")(
        clients
            .ecs
            .update_service()
            .cluster(CLUSTER)
            .service(name)
            .set_task_definition(td.map(str::to_owned))
            .desired_count(desired)
            .send()
            .await,
    );
}

async fn point(clients: &Clients, rule: &str, tg: &str) {
    ok("ModifyRule")(
        clients
            .elb
            .modify_rule()
            .rule_arn(rule)
            .actions(
                Action::builder()
                    .r#type(ActionTypeEnum::Forward)
                    .target_group_arn(tg)
                    .build(),
            )
            .send()
            .await,
    );
}

/// What a run stopped right after the production switch leaves: green on the new image with
/// the preview's 2 tasks, both rules on green, blue still at 2 tasks; green's range `green`.
async fn interrupted_after_the_switch(clients: &Clients, target: &EcsTarget, green: (i32, i32)) {
    let td = register_image(clients, NEW_IMAGE).await;
    update_service(clients, Colour::Green, Some(&td), 2).await;
    set_range(clients, Colour::Green, green.0, green.1).await;
    point(
        clients,
        &target.preview_listener_rule_arn,
        &target.target_groups.green,
    )
    .await;
    point(
        clients,
        &target.listener_rule_arn,
        &target.target_groups.green,
    )
    .await;
}

async fn range(clients: &Clients, target: &EcsTarget, colour: Colour) -> Option<(i32, i32)> {
    deploy_ecs::capacity(clients, target, colour)
        .await
        .expect("DescribeScalableTargets")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rerun_after_a_stop_before_the_scale_down_finishes_the_cycle() {
    let moto = Moto::start();
    let clients = moto.clients().await;
    let target = terraform_stack(
        &moto,
        &clients,
        green_server(Arc::new(AtomicU64::new(5))).await,
        true,
    )
    .await;
    // Stopped after green got production's range, before blue was scaled down.
    interrupted_after_the_switch(&clients, &target, (2, 6)).await;
    assert_eq!(
        desired_count(&clients, &target, Colour::Blue).await,
        Some(2)
    );

    let outcome = deploy_ecs::deploy(&clients, &target, &spec(), None, fast())
        .await
        .expect("the rerun");
    assert_eq!(
        outcome,
        Outcome::AlreadyActive {
            active: Colour::Green,
            finished: true
        }
    );
    assert_eq!(
        desired_count(&clients, &target, Colour::Blue).await,
        Some(0)
    );
    assert_eq!(range(&clients, &target, Colour::Blue).await, Some((0, 0)));
    assert_eq!(
        desired_count(&clients, &target, Colour::Green).await,
        Some(2)
    );
    assert_eq!(range(&clients, &target, Colour::Green).await, Some((2, 6)));
    assert_eq!(
        deploy_ecs::forwarded_target_group(&clients, &target.listener_rule_arn)
            .await
            .unwrap(),
        target.target_groups.green
    );
    assert_eq!(
        service_image(&clients, &target, Colour::Blue).await,
        OLD_IMAGE
    );

    // Finished: a third run has nothing left to do.
    let again = deploy_ecs::deploy(&clients, &target, &spec(), None, fast())
        .await
        .expect("the third run");
    assert_eq!(
        again,
        Outcome::AlreadyActive {
            active: Colour::Green,
            finished: false
        }
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rerun_after_a_stop_before_the_range_moved_gives_green_production_s_range() {
    let moto = Moto::start();
    let clients = moto.clients().await;
    let mut target = terraform_stack(
        &moto,
        &clients,
        green_server(Arc::new(AtomicU64::new(5))).await,
        true,
    )
    .await;
    // Stopped between the switch and green's range: green still pinned at the preview's 2.
    interrupted_after_the_switch(&clients, &target, (2, 2)).await;

    // Without Terraform's range the API cannot tell production's (blue 2-6, green 2-2): refused,
    // nothing changed.
    let e = deploy_ecs::deploy(&clients, &target, &spec(), None, fast())
        .await
        .expect_err("an undecidable range");
    assert!(matches!(e, deploy_ecs::Error::State(_)), "{e}");
    assert_eq!(
        desired_count(&clients, &target, Colour::Blue).await,
        Some(2)
    );
    assert_eq!(range(&clients, &target, Colour::Blue).await, Some((2, 6)));
    assert_eq!(range(&clients, &target, Colour::Green).await, Some((2, 2)));

    // With it (Terraform publishes it), the run finishes the cycle.
    target.capacity = Some(deploy_ecs::Capacity { min: 3, max: 8 });
    let outcome = deploy_ecs::deploy(&clients, &target, &spec(), None, fast())
        .await
        .expect("the rerun");
    assert_eq!(
        outcome,
        Outcome::AlreadyActive {
            active: Colour::Green,
            finished: true
        }
    );
    assert_eq!(range(&clients, &target, Colour::Green).await, Some((3, 8)));
    assert_eq!(range(&clients, &target, Colour::Blue).await, Some((0, 0)));
    assert_eq!(
        desired_count(&clients, &target, Colour::Blue).await,
        Some(0)
    );
    assert_eq!(
        desired_count(&clients, &target, Colour::Green).await,
        Some(2)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_image_that_ecs_rolls_back_is_never_analysed_or_promoted() {
    let moto = Moto::start();
    let clients = moto.clients().await;
    // Green's stand-in answers fast: were the rolled-back old tasks analysed, they would pass.
    let target = terraform_stack(
        &moto,
        &clients,
        green_server(Arc::new(AtomicU64::new(5))).await,
        true,
    )
    .await;
    let ecs = Ecs::start(
        &moto,
        target.clone(),
        EcsBehaviour {
            crashing_image: Some(NEW_IMAGE.to_owned()),
            ..EcsBehaviour::default()
        },
    )
    .await;
    let clients = ecs.clients(&moto).await;
    let seen = watch(moto.clients().await, target.clone());

    let outcome = deploy_ecs::deploy(&clients, &target, &spec(), None, fast())
        .await
        .expect("the deploy runs");
    let Outcome::RolledBack {
        active,
        reason,
        scaled_down,
    } = outcome
    else {
        panic!("expected a rollback, got {outcome:?}");
    };
    assert_eq!(active, Colour::Blue);
    assert!(scaled_down);
    // Either what the command saw first: the PRIMARY deployment back on :1, or :2's FAILED.
    assert!(
        reason.contains("ECS") && reason.contains(&format!("{CLUSTER}-streams:2")),
        "{reason}"
    );
    assert!(
        seen.lock().expect("watch").green_at.is_none(),
        "production never saw green"
    );
    // ECS had put green back on the old revision; the command scaled it to 0 (Revert).
    assert_eq!(
        service_image(&clients, &target, Colour::Green).await,
        OLD_IMAGE
    );
    assert_eq!(
        desired_count(&clients, &target, Colour::Green).await,
        Some(0)
    );
    assert_eq!(range(&clients, &target, Colour::Green).await, Some((0, 0)));
    assert_eq!(
        desired_count(&clients, &target, Colour::Blue).await,
        Some(2)
    );
    assert_eq!(range(&clients, &target, Colour::Blue).await, Some((2, 6)));
    assert_eq!(
        deploy_ecs::forwarded_target_group(&clients, &target.listener_rule_arn)
            .await
            .unwrap(),
        target.target_groups.blue
    );
    drop(ecs);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn old_tasks_left_running_in_green_are_not_analysed_for_the_new_image() {
    let moto = Moto::start();
    let clients = moto.clients().await;
    let delay = Arc::new(AtomicU64::new(5));
    let target = terraform_stack(&moto, &clients, green_server(delay.clone()).await, true).await;
    // A Freeze left green running 2 old tasks; they answer slowly (p99 > 200 ms) and stay
    // healthy in green's target group until the new revision's tasks have run for 1.5 s.
    let ecs = Ecs::start(
        &moto,
        target.clone(),
        EcsBehaviour {
            start_delay: Duration::from_millis(1500),
            drain: Duration::from_millis(1500),
            slow_unless: Some((NEW_IMAGE.to_owned(), delay.clone())),
            ..EcsBehaviour::default()
        },
    )
    .await;
    let clients = ecs.clients(&moto).await;
    update_service(&clients, Colour::Green, None, 2).await;
    let until = Instant::now() + Duration::from_secs(20);
    loop {
        let healthy = ok("DescribeTargetHealth")(
            clients
                .elb
                .describe_target_health()
                .target_group_arn(&target.target_groups.green)
                .send()
                .await,
        )
        .target_health_descriptions()
        .len();
        if healthy == 2 {
            break;
        }
        assert!(Instant::now() < until, "green's old tasks never registered");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        delay.load(Ordering::Relaxed),
        300,
        "the old tasks answer slowly"
    );

    let started = Instant::now();
    let outcome = deploy_ecs::deploy(&clients, &target, &spec(), None, fast())
        .await
        .expect("the deploy runs");
    let Outcome::Promoted {
        active,
        task_definition,
    } = outcome
    else {
        panic!("expected a promotion (only the new tasks analysed), got {outcome:?}");
    };
    assert_eq!(active, Colour::Green);
    assert!(task_definition.ends_with(":2"), "{task_definition}");
    assert!(
        started.elapsed() >= Duration::from_secs(3),
        "the analysis waited for the new tasks and the old ones' drain"
    );
    assert_eq!(
        service_image(&clients, &target, Colour::Green).await,
        NEW_IMAGE
    );
    assert_eq!(
        desired_count(&clients, &target, Colour::Blue).await,
        Some(0)
    );
    drop(ecs);
}
