//! ELBv2 target groups for in-place deployments behind a load balancer
//! (`loadBalancerInfo.targetGroupInfoList`): BlockTraffic deregisters a host from every
//! target group and waits until it has drained; AllowTraffic registers it again and waits
//! until it is healthy.
//!
//! The steps are split into a call that asks ELB for the change ([`LoadBalancers::block`],
//! [`LoadBalancers::allow`]) and a look at how far it has got ([`LoadBalancers::blocked`],
//! [`LoadBalancers::allowed`]), so the caller can poll from its schedule tick and decide
//! when it has waited long enough. Every call is idempotent.

use aws_sdk_elasticloadbalancingv2 as elb;
use elb::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use elb::types::{
    TargetDescription, TargetHealthDescription, TargetHealthReasonEnum, TargetHealthStateEnum,
    TargetTypeEnum,
};
use serde::{Deserialize, Serialize};

/// ELB's default deregistration delay, used when a group does not report its own.
const DEFAULT_DEREGISTRATION_DELAY_SECONDS: u32 = 300;
const DEREGISTRATION_DELAY: &str = "deregistration_delay.timeout_seconds";

/// The target groups of one AWS account and region.
#[derive(Clone)]
pub struct LoadBalancers {
    client: elb::Client,
}

/// A target group resolved from its name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TargetGroupRef {
    pub name: String,
    pub arn: String,
    /// How long a deregistered target drains (`deregistration_delay.timeout_seconds` when
    /// it was resolved): what BlockTraffic should expect to wait.
    pub deregistration_delay_seconds: u32,
    /// The soonest a registered target can be healthy: its health check interval times
    /// its healthy threshold. What AllowTraffic should expect to wait.
    #[serde(default)]
    pub healthy_after_seconds: u32,
}

/// Why ELB did not do what was asked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TrafficError {
    /// For good: no such target group, a target type other than `instance`, an instance
    /// ELB refuses (not running, not in the group's VPC). The message names the target
    /// group and says why.
    #[error("{0}")]
    Refused(String),
    /// For now: ELB throttled, failed (5xx) or could not be reached.
    #[error("{0}")]
    Unavailable(String),
}

/// Where an instance stands in one traffic step, over all of the groups.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Progress {
    Done,
    /// Not yet, and why, one clause per target group still in the way, e.g. "draining in
    /// target group web (deregistration delay 300 s)" or "initial in target group web:
    /// Elb.InitialHealthChecking (Initial health checks in progress)".
    Waiting(String),
}

impl Progress {
    fn from_waits(waits: Vec<String>) -> Self {
        if waits.is_empty() {
            Progress::Done
        } else {
            Progress::Waiting(waits.join("; "))
        }
    }
}

/// Splits a failed ELB call: throttling (no typed variant in ELB's model, only the
/// `Throttling` code), 5xx answers and calls that got no answer are for now; any other
/// answer ELB gave is for good.
fn failure<E>(what: &str, error: SdkError<E>) -> TrafficError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let for_now = match &error {
        SdkError::ServiceError(context) => {
            context.raw().status().is_server_error()
                || context
                    .err()
                    .code()
                    .is_some_and(|code| code.starts_with("Throttl"))
        }
        // The request could not even be built: trying again builds the same one.
        SdkError::ConstructionFailure(_) => false,
        _ => true,
    };
    let message = format!("{what}: {}", refusal(&error));
    if for_now {
        TrafficError::Unavailable(message)
    } else {
        TrafficError::Refused(message)
    }
}

/// ELB's own words (`Code: message`) when it answered, the whole chain otherwise.
fn refusal<E>(error: &SdkError<E>) -> String
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    match error.as_service_error() {
        Some(service) if service.code().is_some() => format!(
            "{}: {}",
            service.code().unwrap_or_default(),
            service.message().unwrap_or("(no message)")
        ),
        _ => DisplayErrorContext(error).to_string(),
    }
}

/// Whether ELB still routes, or may route, new requests to this registration.
fn registered(description: &TargetHealthDescription) -> bool {
    let health = description.target_health();
    match health.and_then(|health| health.state()) {
        Some(TargetHealthStateEnum::Draining | TargetHealthStateEnum::UnhealthyDraining) => false,
        // `unused` is also a registered target whose group no listener uses, or whose
        // instance is stopped: only Target.NotRegistered means it is gone.
        Some(TargetHealthStateEnum::Unused) => {
            health.and_then(|health| health.reason())
                != Some(&TargetHealthReasonEnum::NotRegistered)
        }
        _ => true,
    }
}

fn draining(description: &TargetHealthDescription) -> bool {
    matches!(
        description
            .target_health()
            .and_then(|health| health.state()),
        Some(TargetHealthStateEnum::Draining | TargetHealthStateEnum::UnhealthyDraining)
    )
}

/// Whether the load balancer sends this registration traffic: healthy, or health checks
/// are off (ELB then routes to every registered target).
fn serving(description: &TargetHealthDescription) -> bool {
    let health = description.target_health();
    match health.and_then(|health| health.state()) {
        Some(TargetHealthStateEnum::Healthy) => true,
        Some(TargetHealthStateEnum::Unavailable) => {
            health.and_then(|health| health.reason())
                == Some(&TargetHealthReasonEnum::HealthCheckDisabled)
        }
        _ => false,
    }
}

/// "unhealthy in target group web: Target.Timeout (Request timed out)".
fn standing(group: &TargetGroupRef, description: &TargetHealthDescription) -> String {
    let health = description.target_health();
    let state = health
        .and_then(|health| health.state())
        .map_or("no state", |state| state.as_str());
    let mut text = format!("{state} in target group {}", group.name);
    if let Some(reason) = health.and_then(|health| health.reason()) {
        text.push_str(&format!(": {}", reason.as_str()));
    }
    if let Some(about) = health.and_then(|health| health.description()) {
        text.push_str(&format!(" ({about})"));
    }
    text
}

impl LoadBalancers {
    pub fn new(client: elb::Client) -> Self {
        Self { client }
    }

    /// The target groups with these names (duplicates once, in the order given), with
    /// their deregistration delays. A name no group has is refused, naming it; so is a
    /// group whose targets are not instances (`ip`, `lambda`, `alb`), since an in-place
    /// deployment takes instances in and out.
    pub async fn resolve(&self, names: &[String]) -> Result<Vec<TargetGroupRef>, TrafficError> {
        let mut groups: Vec<TargetGroupRef> = Vec::new();
        for name in names {
            if groups.iter().any(|group| &group.name == name) {
                continue;
            }
            // One name per call: ELB's TargetGroupNotFound for several does not say which.
            let found = self
                .client
                .describe_target_groups()
                .names(name)
                .send()
                .await
                .map_err(|error| {
                    if error
                        .as_service_error()
                        .is_some_and(|error| error.is_target_group_not_found_exception())
                    {
                        TrafficError::Refused(format!("no target group named {name:?}"))
                    } else {
                        failure(
                            &format!("target group {name}: ELB DescribeTargetGroups"),
                            error,
                        )
                    }
                })?;
            let group = found
                .target_groups()
                .iter()
                .find(|group| group.target_group_name() == Some(name))
                .ok_or_else(|| TrafficError::Refused(format!("no target group named {name:?}")))?;
            let target_type = group.target_type().unwrap_or(&TargetTypeEnum::Instance);
            if target_type != &TargetTypeEnum::Instance {
                return Err(TrafficError::Refused(format!(
                    "target group {name} has target type {}; an in-place deployment registers instances, so its target groups need target type instance",
                    target_type.as_str()
                )));
            }
            let arn = group
                .target_group_arn()
                .ok_or_else(|| {
                    TrafficError::Unavailable(format!(
                        "target group {name}: ELB DescribeTargetGroups answered no ARN"
                    ))
                })?
                .to_owned();
            let attributes = self
                .client
                .describe_target_group_attributes()
                .target_group_arn(&arn)
                .send()
                .await
                .map_err(|error| {
                    failure(
                        &format!("target group {name}: ELB DescribeTargetGroupAttributes"),
                        error,
                    )
                })?;
            let deregistration_delay_seconds = attributes
                .attributes()
                .iter()
                .find(|attribute| attribute.key() == Some(DEREGISTRATION_DELAY))
                .and_then(|attribute| attribute.value()?.parse().ok())
                .unwrap_or(DEFAULT_DEREGISTRATION_DELAY_SECONDS);
            let interval = group.health_check_interval_seconds().unwrap_or(30);
            let threshold = group.healthy_threshold_count().unwrap_or(5);
            groups.push(TargetGroupRef {
                name: name.clone(),
                arn,
                deregistration_delay_seconds,
                healthy_after_seconds: u32::try_from(interval.max(0) * threshold.max(0))
                    .unwrap_or(0),
            });
        }
        Ok(groups)
    }

    /// How the instance stands in the group: one description per registration (an
    /// instance may be registered on several ports); none when ELB does not know it.
    async fn registrations(
        &self,
        group: &TargetGroupRef,
        instance_id: &str,
    ) -> Result<Vec<TargetHealthDescription>, TrafficError> {
        match self
            .client
            .describe_target_health()
            .target_group_arn(&group.arn)
            .targets(TargetDescription::builder().id(instance_id).build())
            .send()
            .await
        {
            Ok(output) => Ok(output.target_health_descriptions.unwrap_or_default()),
            Err(error) => {
                let what = format!(
                    "target group {}: ELB DescribeTargetHealth for {instance_id}",
                    group.name
                );
                match error.as_service_error() {
                    // An instance ELB does not know (terminated, another VPC) is in no group.
                    Some(service) if service.is_invalid_target_exception() => Ok(Vec::new()),
                    Some(service) if service.is_target_group_not_found_exception() => {
                        Err(TrafficError::Refused(format!(
                            "target group {} ({}) no longer exists",
                            group.name, group.arn
                        )))
                    }
                    Some(service) if service.is_health_unavailable_exception() => Err(
                        TrafficError::Unavailable(format!("{what}: {}", refusal(&error))),
                    ),
                    _ => Err(failure(&what, error)),
                }
            }
        }
    }

    /// BlockTraffic: deregisters the instance from each group wherever it is registered.
    /// Already deregistered, or draining, is fine: there is nothing to ask for.
    pub async fn block(
        &self,
        groups: &[TargetGroupRef],
        instance_id: &str,
    ) -> Result<(), TrafficError> {
        for group in groups {
            // Look first: moto answers DeregisterTargets for a target that is not
            // registered (draining included) with InvalidTarget, where ELB succeeds.
            let targets: Vec<TargetDescription> = self
                .registrations(group, instance_id)
                .await?
                .iter()
                .filter(|description| registered(description))
                .map(|description| {
                    TargetDescription::builder()
                        .id(instance_id)
                        .set_port(description.target().and_then(|target| target.port()))
                        .build()
                })
                .collect();
            if targets.is_empty() {
                continue;
            }
            match self
                .client
                .deregister_targets()
                .target_group_arn(&group.arn)
                .set_targets(Some(targets))
                .send()
                .await
            {
                Ok(_) => {}
                // Deregistered by someone else between the look and the call: done all the
                // same (see above for moto).
                Err(error)
                    if error
                        .as_service_error()
                        .is_some_and(|error| error.is_invalid_target_exception()) =>
                {
                    tracing::info!(
                        target_group = group.name,
                        instance_id,
                        error = %DisplayErrorContext(&error),
                        "target already deregistered"
                    );
                }
                Err(error)
                    if error
                        .as_service_error()
                        .is_some_and(|error| error.is_target_group_not_found_exception()) =>
                {
                    return Err(TrafficError::Refused(format!(
                        "target group {} ({}) no longer exists",
                        group.name, group.arn
                    )));
                }
                Err(error) => {
                    return Err(failure(
                        &format!(
                            "target group {}: ELB DeregisterTargets {instance_id}",
                            group.name
                        ),
                        error,
                    ));
                }
            }
        }
        Ok(())
    }

    /// Done when the instance is neither registered nor draining in any of the groups.
    pub async fn blocked(
        &self,
        groups: &[TargetGroupRef],
        instance_id: &str,
    ) -> Result<Progress, TrafficError> {
        let mut waits = Vec::new();
        for group in groups {
            let registrations = self.registrations(group, instance_id).await?;
            if let Some(description) = registrations.iter().find(|d| registered(d)) {
                waits.push(format!(
                    "still registered: {}",
                    standing(group, description)
                ));
            } else if registrations.iter().any(draining) {
                waits.push(format!(
                    "draining in target group {} (deregistration delay {} s)",
                    group.name, group.deregistration_delay_seconds
                ));
            }
        }
        Ok(Progress::from_waits(waits))
    }

    /// AllowTraffic: registers the instance with each group on the group's port. Already
    /// registered is fine (ELB ignores a registration it has); draining, it is taken back.
    /// An instance ELB will not take (not running, not in the group's VPC) is refused.
    pub async fn allow(
        &self,
        groups: &[TargetGroupRef],
        instance_id: &str,
    ) -> Result<(), TrafficError> {
        for group in groups {
            let registered = self
                .client
                .register_targets()
                .target_group_arn(&group.arn)
                .targets(TargetDescription::builder().id(instance_id).build())
                .send()
                .await;
            let Err(error) = registered else {
                continue;
            };
            let service = error.as_service_error();
            return Err(
                if service.is_some_and(|error| error.is_target_group_not_found_exception()) {
                    TrafficError::Refused(format!(
                        "target group {} ({}) no longer exists",
                        group.name, group.arn
                    ))
                } else if service.is_some_and(|error| error.is_invalid_target_exception()) {
                    TrafficError::Refused(format!(
                        "target group {} refuses instance {instance_id}: {}",
                        group.name,
                        refusal(&error)
                    ))
                } else {
                    failure(
                        &format!(
                            "target group {}: ELB RegisterTargets {instance_id}",
                            group.name
                        ),
                        error,
                    )
                },
            );
        }
        Ok(())
    }

    /// Done when the instance is registered and healthy (or unchecked: health checks off)
    /// in every group. Otherwise Waiting with each group's state and reason: initial and
    /// unhealthy targets may still pass their checks, so the caller's deadline decides
    /// when waiting has failed.
    pub async fn allowed(
        &self,
        groups: &[TargetGroupRef],
        instance_id: &str,
    ) -> Result<Progress, TrafficError> {
        let mut waits = Vec::new();
        for group in groups {
            let registrations = self.registrations(group, instance_id).await?;
            let live: Vec<&TargetHealthDescription> =
                registrations.iter().filter(|d| registered(d)).collect();
            if live.is_empty() {
                waits.push(match registrations.iter().find(|d| draining(d)) {
                    Some(description) => standing(group, description),
                    None => format!("not registered in target group {}", group.name),
                });
            } else if let Some(description) = live.iter().find(|d| !serving(d)) {
                waits.push(standing(group, description));
            }
        }
        Ok(Progress::from_waits(waits))
    }
}
