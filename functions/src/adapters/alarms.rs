//! CloudWatch: the alarms a deployment watches, polled while it runs.

use aws_sdk_dynamodb::error::DisplayErrorContext;
use std::collections::BTreeMap;

/// CloudWatch alarms, polled while a deployment that watches them runs.
#[derive(Clone)]
pub struct Alarms {
    client: aws_sdk_cloudwatch::Client,
}

impl Alarms {
    pub fn new(client: aws_sdk_cloudwatch::Client) -> Self {
        Self { client }
    }

    /// Polls the named alarms (metric and composite; at most CodeDeploy's 10): those in
    /// ALARM, or why their state could not be had (CloudWatch failed, or an alarm does
    /// not exist). An alarm in ALARM wins over one missing.
    pub async fn check(&self, names: &[String]) -> gantry_core::deployment::AlarmCheck {
        use aws_sdk_cloudwatch::types::{AlarmType, StateValue};
        use gantry_core::deployment::AlarmCheck;
        let answer = self
            .client
            .describe_alarms()
            .set_alarm_names(Some(names.to_vec()))
            .alarm_types(AlarmType::MetricAlarm)
            .alarm_types(AlarmType::CompositeAlarm)
            .send()
            .await;
        let output = match answer {
            Ok(output) => output,
            Err(error) => {
                return AlarmCheck::Failed {
                    reason: format!("CloudWatch DescribeAlarms: {}", DisplayErrorContext(error)),
                };
            }
        };
        let states: BTreeMap<&str, Option<&StateValue>> = output
            .metric_alarms()
            .iter()
            .map(|alarm| (alarm.alarm_name(), alarm.state_value()))
            .chain(
                output
                    .composite_alarms()
                    .iter()
                    .map(|alarm| (alarm.alarm_name(), alarm.state_value())),
            )
            .filter_map(|(name, state)| Some((name?, state)))
            .collect();
        let firing: Vec<String> = names
            .iter()
            .filter(|name| states.get(name.as_str()) == Some(&Some(&StateValue::Alarm)))
            .cloned()
            .collect();
        if !firing.is_empty() {
            return AlarmCheck::Active { alarms: firing };
        }
        let missing: Vec<&str> = names
            .iter()
            .map(String::as_str)
            .filter(|name| !states.contains_key(name))
            .collect();
        if !missing.is_empty() {
            return AlarmCheck::Failed {
                reason: format!("no CloudWatch alarm named {}", missing.join(", ")),
            };
        }
        AlarmCheck::Clear
    }
}
