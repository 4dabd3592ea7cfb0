//! The ELBv2 traffic adapter against a real moto server with the stand-in's target health:
//! an EC2 instance whose application (an HTTP server this test runs on the instance's
//! loopback address, tests/standin/addresses.py) answers the health checks of a target
//! group a load balancer's listener forwards to.

use aws_sdk_elasticloadbalancingv2 as elb;
use elb::types::{Action, ActionTypeEnum, ProtocolEnum, TargetGroupAttribute, TargetTypeEnum};
use gantry_functions::traffic::{LoadBalancers, Progress, TargetGroupRef, TrafficError};
use gantry_tests::moto::Moto;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const HEALTH_PATH: &str = "/health";
const DEREGISTRATION_DELAY_SECONDS: u32 = 2;
/// Long enough for a few health checks at 1 s intervals, on a busy machine.
const DEADLINE: Duration = Duration::from_secs(20);

struct Fixture {
    _moto: Moto,
    ec2: aws_sdk_ec2::Client,
    elb: elb::Client,
    load_balancers: LoadBalancers,
    vpc_id: String,
    subnet_ids: Vec<String>,
    balancer_arn: String,
}

/// A running instance and the address its application answers at.
struct Instance {
    id: String,
    address: Ipv4Addr,
}

impl Fixture {
    async fn start() -> Self {
        let moto = Moto::start().expect("moto");
        let config = moto.sdk_config().await;
        let ec2 = aws_sdk_ec2::Client::new(&config);
        let elb = elb::Client::new(&config);
        let vpc_id = ec2
            .create_vpc()
            .cidr_block("10.23.0.0/16")
            .send()
            .await
            .expect("vpc")
            .vpc
            .and_then(|vpc| vpc.vpc_id)
            .expect("vpc id");
        let mut subnet_ids = Vec::new();
        for (cidr, zone) in [
            ("10.23.1.0/24", "us-east-1a"),
            ("10.23.2.0/24", "us-east-1b"),
        ] {
            subnet_ids.push(
                ec2.create_subnet()
                    .vpc_id(&vpc_id)
                    .cidr_block(cidr)
                    .availability_zone(zone)
                    .send()
                    .await
                    .expect("subnet")
                    .subnet
                    .and_then(|subnet| subnet.subnet_id)
                    .expect("subnet id"),
            );
        }
        let balancer_arn = elb
            .create_load_balancer()
            .name("web")
            .set_subnets(Some(subnet_ids.clone()))
            .send()
            .await
            .expect("load balancer")
            .load_balancers()[0]
            .load_balancer_arn()
            .expect("load balancer arn")
            .to_owned();
        Self {
            _moto: moto,
            load_balancers: LoadBalancers::new(elb.clone()),
            ec2,
            elb,
            vpc_id,
            subnet_ids,
            balancer_arn,
        }
    }

    async fn instance(&self) -> Instance {
        let image = self
            .ec2
            .describe_images()
            .send()
            .await
            .expect("images")
            .images()[0]
            .image_id()
            .expect("image id")
            .to_owned();
        let instance = self
            .ec2
            .run_instances()
            .image_id(image)
            .subnet_id(&self.subnet_ids[0])
            .min_count(1)
            .max_count(1)
            .send()
            .await
            .expect("run instance")
            .instances()[0]
            .clone();
        let private: Ipv4Addr = instance
            .private_ip_address()
            .expect("private address")
            .parse()
            .expect("IPv4");
        // The stand-in's convention: 127.B.C.D for the private address A.B.C.D.
        let [_, b, c, d] = private.octets();
        Instance {
            id: instance.instance_id().expect("instance id").to_owned(),
            address: Ipv4Addr::new(127, b, c, d),
        }
    }

    /// An HTTP target group with short health settings on `port`; with `listen`, the
    /// load balancer forwards to it (the stand-in checks only such groups).
    async fn target_group(&self, name: &str, port: u16, listen: bool) -> String {
        let arn = self
            .elb
            .create_target_group()
            .name(name)
            .protocol(ProtocolEnum::Http)
            .port(i32::from(port))
            .vpc_id(&self.vpc_id)
            .health_check_path(HEALTH_PATH)
            .health_check_interval_seconds(1)
            .healthy_threshold_count(2)
            .unhealthy_threshold_count(2)
            .send()
            .await
            .expect("target group")
            .target_groups()[0]
            .target_group_arn()
            .expect("target group arn")
            .to_owned();
        self.elb
            .modify_target_group_attributes()
            .target_group_arn(&arn)
            .attributes(
                TargetGroupAttribute::builder()
                    .key("deregistration_delay.timeout_seconds")
                    .value(DEREGISTRATION_DELAY_SECONDS.to_string())
                    .build(),
            )
            .send()
            .await
            .expect("deregistration delay");
        if listen {
            self.elb
                .create_listener()
                .load_balancer_arn(&self.balancer_arn)
                .protocol(ProtocolEnum::Http)
                .port(80)
                .default_actions(
                    Action::builder()
                        .r#type(ActionTypeEnum::Forward)
                        .target_group_arn(&arn)
                        .build(),
                )
                .send()
                .await
                .expect("listener");
        }
        arn
    }

    async fn resolve(&self, names: &[&str]) -> Result<Vec<TargetGroupRef>, TrafficError> {
        let names: Vec<String> = names.iter().map(|name| name.to_string()).collect();
        self.load_balancers.resolve(&names).await
    }
}

/// The instance's application: answers every request 200 until stopped (dropped).
struct App {
    task: tokio::task::JoinHandle<()>,
}

impl App {
    async fn serve(listener: TcpListener) -> Self {
        let task = tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut request = Vec::new();
                    let mut chunk = [0u8; 1024];
                    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                        match stream.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(read) => request.extend_from_slice(&chunk[..read]),
                        }
                    }
                    let _ = stream
                        .write_all(
                            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
                        )
                        .await;
                    let _ = stream.shutdown().await;
                });
            }
        });
        Self { task }
    }

    /// Stops accepting: the listening socket closes with the task.
    async fn stop(self) {
        self.task.abort();
        let _ = self.task.await;
    }
}

/// A listening socket on the instance's address: its port becomes the target group's.
async fn bind(instance: &Instance) -> (TcpListener, u16) {
    let listener = TcpListener::bind((instance.address, 0))
        .await
        .expect("bind the instance's loopback address");
    let port = listener.local_addr().expect("local address").port();
    (listener, port)
}

/// Polls `look` until `wanted` holds or DEADLINE passes; returns every distinct answer
/// seen on the way, the last one the one that held.
async fn poll_until<F, Fut>(
    what: &str,
    mut look: F,
    wanted: impl Fn(&Progress) -> bool,
) -> Vec<Progress>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Progress, TrafficError>>,
{
    let deadline = Instant::now() + DEADLINE;
    let mut seen: Vec<Progress> = Vec::new();
    loop {
        let progress = look()
            .await
            .unwrap_or_else(|error| panic!("{what}: {error}"));
        if seen.last() != Some(&progress) {
            seen.push(progress.clone());
        }
        if wanted(&progress) {
            return seen;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: not within {DEADLINE:?}; seen {seen:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn waiting_with(progress: &Progress, words: &str) -> bool {
    matches!(progress, Progress::Waiting(why) if why.contains(words))
}

#[tokio::test(flavor = "multi_thread")]
async fn an_instance_is_allowed_until_healthy_and_blocked_until_drained() {
    let fixture = Fixture::start().await;
    let instance = fixture.instance().await;
    let (listener, port) = bind(&instance).await;
    let app = App::serve(listener).await;
    fixture.target_group("web", port, true).await;
    let groups = fixture.resolve(&["web"]).await.expect("resolve");
    assert_eq!(groups.len(), 1);
    assert_eq!(groups[0].name, "web");
    assert_eq!(
        groups[0].deregistration_delay_seconds,
        DEREGISTRATION_DELAY_SECONDS
    );
    let load_balancers = &fixture.load_balancers;

    assert_eq!(
        load_balancers.allowed(&groups, &instance.id).await.unwrap(),
        Progress::Waiting("not registered in target group web".into()),
        "nothing asked yet"
    );
    load_balancers
        .allow(&groups, &instance.id)
        .await
        .expect("allow");
    let seen = poll_until(
        "allowed",
        || load_balancers.allowed(&groups, &instance.id),
        |progress| *progress == Progress::Done,
    )
    .await;
    assert!(
        waiting_with(
            &seen[0],
            "initial in target group web: Elb.InitialHealthChecking"
        ),
        "checks start as initial: {seen:?}"
    );
    load_balancers
        .allow(&groups, &instance.id)
        .await
        .expect("allow again");
    assert_eq!(
        load_balancers.allowed(&groups, &instance.id).await.unwrap(),
        Progress::Done,
        "registering again keeps the instance healthy"
    );

    load_balancers
        .block(&groups, &instance.id)
        .await
        .expect("block");
    let seen = poll_until(
        "blocked",
        || load_balancers.blocked(&groups, &instance.id),
        |progress| *progress == Progress::Done,
    )
    .await;
    assert_eq!(
        seen[0],
        Progress::Waiting("draining in target group web (deregistration delay 2 s)".into()),
        "{seen:?}"
    );
    load_balancers
        .block(&groups, &instance.id)
        .await
        .expect("blocking a deregistered instance is fine");
    assert_eq!(
        load_balancers.blocked(&groups, &instance.id).await.unwrap(),
        Progress::Done
    );

    // Blocking while it drains asks nothing more of ELB, and it still drains.
    load_balancers
        .allow(&groups, &instance.id)
        .await
        .expect("allow");
    load_balancers
        .block(&groups, &instance.id)
        .await
        .expect("block");
    load_balancers
        .block(&groups, &instance.id)
        .await
        .expect("block while draining");
    assert!(
        waiting_with(
            &load_balancers.blocked(&groups, &instance.id).await.unwrap(),
            "draining in target group web"
        ),
        "still draining"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_instance_whose_application_is_down_waits_unhealthy() {
    let fixture = Fixture::start().await;
    let instance = fixture.instance().await;
    // The application's port, with the application stopped: nothing listens on it.
    let (listener, port) = bind(&instance).await;
    drop(listener);
    fixture.target_group("api", port, true).await;
    let groups = fixture.resolve(&["api"]).await.expect("resolve");
    let load_balancers = &fixture.load_balancers;

    load_balancers
        .allow(&groups, &instance.id)
        .await
        .expect("allow");
    poll_until(
        "unhealthy",
        || load_balancers.allowed(&groups, &instance.id),
        |progress| {
            assert_ne!(*progress, Progress::Done, "nothing answers the checks");
            waiting_with(
                progress,
                "unhealthy in target group api: Target.FailedHealthChecks",
            )
        },
    )
    .await;
    // Health may yet recover, so it stays Waiting: the caller's deadline decides. Watch
    // it for a few more health check intervals.
    let watch_until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < watch_until {
        let progress = load_balancers.allowed(&groups, &instance.id).await.unwrap();
        assert!(waiting_with(&progress, "unhealthy"), "{progress:?}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_target_group_not_in_use_is_registered_but_never_allowed() {
    let fixture = Fixture::start().await;
    let instance = fixture.instance().await;
    fixture.target_group("idle", 8080, false).await;
    let groups = fixture.resolve(&["idle"]).await.expect("resolve");
    let load_balancers = &fixture.load_balancers;

    load_balancers
        .allow(&groups, &instance.id)
        .await
        .expect("allow");
    assert_eq!(
        load_balancers.allowed(&groups, &instance.id).await.unwrap(),
        Progress::Waiting(
            "unused in target group idle: Target.NotInUse (Target group is not configured to receive traffic from the load balancer)"
                .into()
        )
    );
    // Registered all the same: blocking it means deregistering it.
    assert!(waiting_with(
        &load_balancers.blocked(&groups, &instance.id).await.unwrap(),
        "still registered: unused in target group idle"
    ));
    load_balancers
        .block(&groups, &instance.id)
        .await
        .expect("block");
    assert!(waiting_with(
        &load_balancers.blocked(&groups, &instance.id).await.unwrap(),
        "draining in target group idle"
    ));
}

#[tokio::test(flavor = "multi_thread")]
async fn what_elb_refuses_is_refused_and_names_the_target_group() {
    let fixture = Fixture::start().await;
    fixture.target_group("web", 8080, true).await;

    let missing = fixture.resolve(&["web", "gone"]).await;
    assert_eq!(
        missing,
        Err(TrafficError::Refused(
            "no target group named \"gone\"".into()
        ))
    );

    fixture
        .elb
        .create_target_group()
        .name("by-address")
        .protocol(ProtocolEnum::Http)
        .port(8080)
        .vpc_id(&fixture.vpc_id)
        .target_type(TargetTypeEnum::Ip)
        .send()
        .await
        .expect("ip target group");
    let Err(TrafficError::Refused(why)) = fixture.resolve(&["by-address"]).await else {
        panic!("an ip target group is refused");
    };
    assert!(
        why.contains("target group by-address has target type ip"),
        "{why}"
    );

    let groups = fixture.resolve(&["web", "web"]).await.expect("resolve");
    assert_eq!(groups.len(), 1, "a name given twice is one group");
    let instance = fixture.instance().await;
    fixture
        .ec2
        .stop_instances()
        .instance_ids(&instance.id)
        .send()
        .await
        .expect("stop instance");
    let Err(TrafficError::Refused(why)) = fixture.load_balancers.allow(&groups, &instance.id).await
    else {
        panic!("a stopped instance is refused");
    };
    assert!(
        why.starts_with(&format!(
            "target group web refuses instance {}: InvalidTarget:",
            instance.id
        )),
        "{why}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unreachable_elb_is_unavailable() {
    // A loopback port nobody listens on: connections are refused.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("free port")
        .port();
    let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(format!("http://127.0.0.1:{port}"))
        .region(aws_config::Region::new("us-east-1"))
        .test_credentials()
        .retry_config(aws_config::retry::RetryConfig::disabled())
        .load()
        .await;
    let load_balancers = LoadBalancers::new(elb::Client::new(&config));
    let result = load_balancers.resolve(&["web".to_owned()]).await;
    let Err(TrafficError::Unavailable(why)) = result else {
        panic!("expected Unavailable, got {result:?}");
    };
    assert!(
        why.starts_with("target group web: ELB DescribeTargetGroups:"),
        "{why}"
    );
}
