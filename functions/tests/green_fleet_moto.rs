//! The blue/green fleet adapter against a real moto server (with the stand-in's lifecycle
//! hooks): copying an Auto Scaling group as CodeDeploy does, listing its instances,
//! deleting groups and terminating instances, each twice where a retry could repeat it.
//!
//! moto ignores CreateAutoScalingGroup's LifecycleHookSpecificationList, so here the
//! copy's hooks come from the adapter's PutLifecycleHook for hooks the new group lacks
//! (in AWS the list makes them and that step finds nothing to do), and the copy's first
//! instances launch before its hooks exist.

use autoscaling::types::{
    AutoScalingGroup, LaunchTemplate, LaunchTemplateSpecification, LifecycleHook,
    MixedInstancesPolicy, Tag,
};
use aws_sdk_autoscaling as autoscaling;
use aws_sdk_elasticloadbalancingv2 as elb;
use gantry_functions::adapters::{HookKind, LAUNCHING, MANAGED_TAG, TERMINATING};
use gantry_functions::error::Exception;
use gantry_functions::green_fleet::{DEPLOYMENT_TAG, GreenFleets, GroupInstance, copy_name};
use gantry_tests::moto::Moto;
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

const ORIGINAL: &str = "web-blue";
const DEPLOYMENT_GROUP: &str = "web-dg";
const USER_HOOK: &str = "warm-cache";
const USER_ROLE: &str = "arn:aws:iam::123456789012:role/hook-publisher";

struct Fixture {
    _moto: Moto,
    autoscaling: autoscaling::Client,
    ec2: aws_sdk_ec2::Client,
    elb: elb::Client,
    sqs: aws_sdk_sqs::Client,
    fleets: GreenFleets,
}

impl Fixture {
    async fn start() -> Self {
        let moto = Moto::start().expect("moto");
        let config = moto.sdk_config().await;
        let autoscaling = autoscaling::Client::new(&config);
        let ec2 = aws_sdk_ec2::Client::new(&config);
        Self {
            _moto: moto,
            fleets: GreenFleets::new(autoscaling.clone(), ec2.clone()),
            elb: elb::Client::new(&config),
            sqs: aws_sdk_sqs::Client::new(&config),
            autoscaling,
            ec2,
        }
    }

    async fn image(&self) -> String {
        self.ec2
            .describe_images()
            .send()
            .await
            .expect("images")
            .images()[0]
            .image_id()
            .expect("image id")
            .to_owned()
    }

    /// A VPC with a subnet in each of two zones.
    async fn subnets(&self) -> (String, Vec<String>) {
        let vpc = self
            .ec2
            .create_vpc()
            .cidr_block("10.31.0.0/16")
            .send()
            .await
            .expect("vpc")
            .vpc
            .and_then(|vpc| vpc.vpc_id)
            .expect("vpc id");
        let mut subnets = Vec::new();
        for (cidr, zone) in [
            ("10.31.1.0/24", "us-east-1a"),
            ("10.31.2.0/24", "us-east-1b"),
        ] {
            subnets.push(
                self.ec2
                    .create_subnet()
                    .vpc_id(&vpc)
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
        (vpc, subnets)
    }

    async fn launch_template(&self, name: &str) -> String {
        self.ec2
            .create_launch_template()
            .launch_template_name(name)
            .launch_template_data(
                aws_sdk_ec2::types::RequestLaunchTemplateData::builder()
                    .image_id(self.image().await)
                    .instance_type(aws_sdk_ec2::types::InstanceType::T3Micro)
                    .build(),
            )
            .send()
            .await
            .expect("launch template")
            .launch_template
            .and_then(|template| template.launch_template_id)
            .expect("launch template id")
    }

    async fn group(&self, name: &str) -> Option<AutoScalingGroup> {
        self.autoscaling
            .describe_auto_scaling_groups()
            .auto_scaling_group_names(name)
            .send()
            .await
            .expect("describe groups")
            .auto_scaling_groups
            .unwrap_or_default()
            .into_iter()
            .find(|group| group.auto_scaling_group_name() == Some(name))
    }

    async fn hooks(&self, group: &str) -> Vec<LifecycleHook> {
        self.autoscaling
            .describe_lifecycle_hooks()
            .auto_scaling_group_name(group)
            .send()
            .await
            .expect("describe hooks")
            .lifecycle_hooks
            .unwrap_or_default()
    }

    /// The group's instances once there are `count`.
    async fn instances(&self, group: &str, count: usize) -> Vec<GroupInstance> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let instances = self.fleets.instances(group).await.expect("instances");
            if instances.len() == count || Instant::now() > deadline {
                assert_eq!(instances.len(), count, "{group}: {instances:?}");
                return instances;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn ec2_state(&self, instance_id: &str) -> String {
        self.ec2
            .describe_instances()
            .instance_ids(instance_id)
            .send()
            .await
            .expect("describe instances")
            .reservations()[0]
            .instances()[0]
            .state()
            .and_then(|state| state.name())
            .expect("state")
            .as_str()
            .to_owned()
    }
}

fn tag(key: &str, value: &str, propagate: bool) -> Tag {
    Tag::builder()
        .key(key)
        .value(value)
        .propagate_at_launch(propagate)
        .build()
}

/// (key, value, propagate at launch), sorted.
fn tags(group: &AutoScalingGroup) -> BTreeSet<(String, String, bool)> {
    group
        .tags()
        .iter()
        .map(|tag| {
            (
                tag.key().unwrap_or_default().to_owned(),
                tag.value().unwrap_or_default().to_owned(),
                tag.propagate_at_launch().unwrap_or_default(),
            )
        })
        .collect()
}

fn ids(instances: &[GroupInstance]) -> BTreeSet<String> {
    instances.iter().map(|i| i.instance_id.clone()).collect()
}

#[test]
fn copies_are_named_as_codedeploy_names_them() {
    assert_eq!(
        copy_name("web-dg", "d-9X2B4LQ7A"),
        "CodeDeploy_web-dg_d-9X2B4LQ7A"
    );
    let long = copy_name(&"x".repeat(400), "d-9X2B4LQ7A");
    assert_eq!(long.len(), 255);
    assert!(long.ends_with("x_d-9X2B4LQ7A"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copies_a_launch_template_group_without_its_target_groups_or_gantrys_hooks() {
    let fx = Fixture::start().await;
    let (vpc, subnets) = fx.subnets().await;
    let template = fx.launch_template("web").await;
    let target_group = fx
        .elb
        .create_target_group()
        .name("web")
        .protocol(elb::types::ProtocolEnum::Http)
        .port(80)
        .vpc_id(&vpc)
        .send()
        .await
        .expect("target group")
        .target_groups()[0]
        .target_group_arn()
        .expect("target group arn")
        .to_owned();
    let zones = subnets.join(",");
    fx.autoscaling
        .create_auto_scaling_group()
        .auto_scaling_group_name(ORIGINAL)
        .launch_template(
            LaunchTemplateSpecification::builder()
                .launch_template_id(&template)
                .version("1")
                .build(),
        )
        .min_size(1)
        .max_size(4)
        .desired_capacity(2)
        .vpc_zone_identifier(&zones)
        .health_check_type("ELB")
        .health_check_grace_period(120)
        .default_cooldown(60)
        .termination_policies("OldestInstance")
        .target_group_arns(&target_group)
        .tags(tag(MANAGED_TAG, "true", false))
        .tags(tag("Name", "web", true))
        .send()
        .await
        .expect("original group");
    let queue_url = fx
        .sqs
        .create_queue()
        .queue_name("hook-events")
        .send()
        .await
        .expect("queue")
        .queue_url
        .expect("queue url");
    let queue_arn = fx
        .sqs
        .get_queue_attributes()
        .queue_url(&queue_url)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
        .send()
        .await
        .expect("queue attributes")
        .attributes
        .and_then(|mut a| a.remove(&aws_sdk_sqs::types::QueueAttributeName::QueueArn))
        .expect("queue arn");
    fx.autoscaling
        .put_lifecycle_hook()
        .auto_scaling_group_name(ORIGINAL)
        .lifecycle_hook_name(USER_HOOK)
        .lifecycle_transition(LAUNCHING)
        .notification_target_arn(&queue_arn)
        .role_arn(USER_ROLE)
        .notification_metadata("prime the cache")
        .heartbeat_timeout(300)
        .default_result("CONTINUE")
        .send()
        .await
        .expect("user hook");
    for kind in HookKind::ALL {
        fx.autoscaling
            .put_lifecycle_hook()
            .auto_scaling_group_name(ORIGINAL)
            .lifecycle_hook_name(kind.hook_name("dg-id-1"))
            .lifecycle_transition(kind.transition())
            .heartbeat_timeout(3600)
            .default_result(kind.default_result())
            .send()
            .await
            .expect("gantry hook");
    }
    let originals = fx.instances(ORIGINAL, 2).await;

    let copy = copy_name(DEPLOYMENT_GROUP, "d-FIRST0001");
    fx.fleets
        .copy_auto_scaling_group(ORIGINAL, &copy, "d-FIRST0001")
        .await
        .expect("copy");

    let made = fx.group(&copy).await.expect("the copy exists");
    let spec = made.launch_template().expect("launch template");
    assert_eq!(spec.launch_template_id(), Some(template.as_str()));
    assert_eq!(spec.version(), Some("1"));
    assert_eq!(
        (made.min_size(), made.max_size(), made.desired_capacity()),
        (Some(1), Some(4), Some(2))
    );
    assert_eq!(made.vpc_zone_identifier(), Some(zones.as_str()));
    assert_eq!(made.health_check_type(), Some("ELB"));
    assert_eq!(made.health_check_grace_period(), Some(120));
    assert_eq!(made.default_cooldown(), Some(60));
    assert_eq!(made.termination_policies(), ["OldestInstance"]);
    assert_eq!(
        tags(&made),
        BTreeSet::from([
            (MANAGED_TAG.to_owned(), "true".to_owned(), false),
            ("Name".to_owned(), "web".to_owned(), true),
            (DEPLOYMENT_TAG.to_owned(), "d-FIRST0001".to_owned(), false),
        ])
    );
    assert!(made.target_group_arns().is_empty(), "{made:?}");
    assert!(made.load_balancer_names().is_empty(), "{made:?}");
    let hooks = fx.hooks(&copy).await;
    assert_eq!(hooks.len(), 1, "only the user's hook: {hooks:?}");
    let hook = &hooks[0];
    assert_eq!(hook.lifecycle_hook_name(), Some(USER_HOOK));
    assert_eq!(hook.lifecycle_transition(), Some(LAUNCHING));
    assert_eq!(hook.notification_target_arn(), Some(queue_arn.as_str()));
    assert_eq!(hook.role_arn(), Some(USER_ROLE));
    assert_eq!(hook.notification_metadata(), Some("prime the cache"));
    assert_eq!(hook.heartbeat_timeout(), Some(300));
    assert_eq!(hook.default_result(), Some("CONTINUE"));
    // The original keeps all of its hooks.
    assert_eq!(fx.hooks(ORIGINAL).await.len(), 3);

    let copied = fx.instances(&copy, 2).await;
    assert!(ids(&copied).is_disjoint(&ids(&originals)));
    for instance in &copied {
        assert!(instance.availability_zone.is_some(), "{instance:?}");
        assert_eq!(instance.lifecycle_state, "InService", "{instance:?}");
    }
    // The target group serves the original instances, none of the copy's.
    let registered: BTreeSet<String> = fx
        .elb
        .describe_target_health()
        .target_group_arn(&target_group)
        .send()
        .await
        .expect("target health")
        .target_health_descriptions()
        .iter()
        .filter_map(|d| d.target().and_then(|t| t.id()).map(str::to_owned))
        .collect();
    assert_eq!(registered, ids(&originals));

    // A retried effect: nothing made again (moto would replace the group, and its
    // instances, on a second CreateAutoScalingGroup).
    fx.fleets
        .copy_auto_scaling_group(ORIGINAL, &copy, "d-FIRST0001")
        .await
        .expect("copy again");
    assert_eq!(ids(&fx.instances(&copy, 2).await), ids(&copied));
    assert_eq!(fx.hooks(&copy).await.len(), 1);

    // The next blue/green copies the copy: its deployment tag is replaced, not repeated.
    let second = copy_name(DEPLOYMENT_GROUP, "d-SECOND002");
    fx.fleets
        .copy_auto_scaling_group(&copy, &second, "d-SECOND002")
        .await
        .expect("copy of the copy");
    let deployment_tags: Vec<_> = tags(&fx.group(&second).await.expect("second copy"))
        .into_iter()
        .filter(|(key, ..)| key == DEPLOYMENT_TAG)
        .collect();
    assert_eq!(
        deployment_tags,
        [(DEPLOYMENT_TAG.to_owned(), "d-SECOND002".to_owned(), false)]
    );

    // Someone else's group under the copy's name is left alone and refused.
    let foreign = copy_name(DEPLOYMENT_GROUP, "d-FOREIGN03");
    fx.autoscaling
        .create_auto_scaling_group()
        .auto_scaling_group_name(&foreign)
        .launch_template(
            LaunchTemplateSpecification::builder()
                .launch_template_id(&template)
                .build(),
        )
        .min_size(0)
        .max_size(1)
        .desired_capacity(0)
        .vpc_zone_identifier(&zones)
        .tags(tag(DEPLOYMENT_TAG, "d-SOMEONE", false))
        .send()
        .await
        .expect("foreign group");
    let error = fx
        .fleets
        .copy_auto_scaling_group(ORIGINAL, &foreign, "d-FOREIGN03")
        .await
        .expect_err("a foreign group is not ours");
    assert_eq!(error.code, Exception::InvalidAutoScalingGroup);
    assert!(error.message.contains(&foreign), "{error}");
    let untouched = fx.group(&foreign).await.expect("foreign group");
    assert_eq!(untouched.desired_capacity(), Some(0));
    assert_eq!(tags(&untouched).len(), 1);

    let error = fx
        .fleets
        .copy_auto_scaling_group("no-such-group", &copy_name("x", "d-X"), "d-X")
        .await
        .expect_err("nothing to copy");
    assert_eq!(error.code, Exception::InvalidAutoScalingGroup);
    assert!(error.message.contains("no-such-group"), "{error}");
    assert!(fx.group(&copy_name("x", "d-X")).await.is_none());

    // Deleting: the group goes and its instances are terminated; again, and a group that
    // never was, are fine.
    fx.fleets
        .delete_auto_scaling_group(&copy)
        .await
        .expect("delete");
    assert!(fx.group(&copy).await.is_none());
    assert!(fx.fleets.instances(&copy).await.expect("none").is_empty());
    for instance in &copied {
        let state = fx.ec2_state(&instance.instance_id).await;
        assert!(
            ["shutting-down", "terminated"].contains(&state.as_str()),
            "{state}"
        );
    }
    fx.fleets
        .delete_auto_scaling_group(&copy)
        .await
        .expect("delete again");
    fx.fleets
        .delete_auto_scaling_group("never-was")
        .await
        .expect("delete a group that never was");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copies_launch_configurations_and_mixed_instances_policies() {
    let fx = Fixture::start().await;
    fx.autoscaling
        .create_launch_configuration()
        .launch_configuration_name("classic")
        .image_id(fx.image().await)
        .instance_type("t3.micro")
        .send()
        .await
        .expect("launch configuration");
    fx.autoscaling
        .create_auto_scaling_group()
        .auto_scaling_group_name("classic")
        .launch_configuration_name("classic")
        .availability_zones("us-east-1a")
        .availability_zones("us-east-1b")
        .min_size(0)
        .max_size(2)
        .desired_capacity(1)
        .send()
        .await
        .expect("classic group");
    fx.fleets
        .copy_auto_scaling_group("classic", "classic-green", "d-CLASSIC01")
        .await
        .expect("copy");
    let made = fx.group("classic-green").await.expect("copy");
    assert_eq!(made.launch_configuration_name(), Some("classic"));
    assert!(made.launch_template().is_none());
    let zones: BTreeSet<&str> = made
        .availability_zones()
        .iter()
        .map(String::as_str)
        .collect();
    assert_eq!(zones, BTreeSet::from(["us-east-1a", "us-east-1b"]));
    assert!(fx.hooks("classic-green").await.is_empty());
    fx.instances("classic-green", 1).await;

    let template = fx.launch_template("mixed").await;
    let (_, subnets) = fx.subnets().await;
    fx.autoscaling
        .create_auto_scaling_group()
        .auto_scaling_group_name("mixed")
        .mixed_instances_policy(
            MixedInstancesPolicy::builder()
                .launch_template(
                    LaunchTemplate::builder()
                        .launch_template_specification(
                            LaunchTemplateSpecification::builder()
                                .launch_template_name("mixed")
                                .version("$Latest")
                                .build(),
                        )
                        .build(),
                )
                .build(),
        )
        .vpc_zone_identifier(subnets.join(","))
        .min_size(0)
        .max_size(2)
        .desired_capacity(1)
        .send()
        .await
        .expect("mixed group");
    // A termination hook of the user's is copied too.
    fx.autoscaling
        .put_lifecycle_hook()
        .auto_scaling_group_name("mixed")
        .lifecycle_hook_name("drain")
        .lifecycle_transition(TERMINATING)
        .heartbeat_timeout(60)
        .default_result("CONTINUE")
        .send()
        .await
        .expect("hook");
    fx.fleets
        .copy_auto_scaling_group("mixed", "mixed-green", "d-MIXED0001")
        .await
        .expect("copy");
    let made = fx.group("mixed-green").await.expect("copy");
    let spec = made
        .mixed_instances_policy()
        .and_then(|p| p.launch_template())
        .and_then(|t| t.launch_template_specification())
        .expect("mixed instances policy");
    // Described with both, created with one: the id.
    assert_eq!(spec.launch_template_id(), Some(template.as_str()));
    assert_eq!(spec.version(), Some("$Latest"));
    let hooks = fx.hooks("mixed-green").await;
    assert_eq!(hooks.len(), 1);
    assert_eq!(hooks[0].lifecycle_transition(), Some(TERMINATING));
    fx.instances("mixed-green", 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terminates_instances_some_of_which_are_gone() {
    let fx = Fixture::start().await;
    let launched = fx
        .ec2
        .run_instances()
        .image_id(fx.image().await)
        .min_count(2)
        .max_count(2)
        .send()
        .await
        .expect("run instances");
    let live: Vec<String> = launched
        .instances()
        .iter()
        .map(|i| i.instance_id().expect("id").to_owned())
        .collect();
    let missing = "i-0123456789abcdef0".to_owned();
    fx.fleets
        .terminate_instances(&[live[0].clone(), missing.clone()])
        .await
        .expect("terminate with one gone");
    assert_eq!(fx.ec2_state(&live[0]).await, "terminated");
    assert_eq!(fx.ec2_state(&live[1]).await, "running");
    // Again, with the one just terminated: a retried effect.
    fx.fleets
        .terminate_instances(&[live[0].clone(), live[1].clone(), missing.clone()])
        .await
        .expect("terminate again");
    assert_eq!(fx.ec2_state(&live[1]).await, "terminated");
    fx.fleets
        .terminate_instances(&[missing])
        .await
        .expect("only gone instances");
    fx.fleets.terminate_instances(&[]).await.expect("none");
}
