//! SNS: a deployment group's trigger notifications.

use super::aws_failure;
use crate::error::ApiError;

/// Publishes trigger messages to SNS topics.
#[derive(Clone)]
pub struct Notifier {
    client: aws_sdk_sns::Client,
}

impl Notifier {
    pub fn new(client: aws_sdk_sns::Client) -> Self {
        Self { client }
    }

    /// Publishes one message. SNS refusing it (the topic is gone, or not ours to
    /// publish to, or the message is not acceptable) is [`PublishError::Refused`]: trying
    /// again would not help. Anything else may pass on a later try.
    pub async fn publish(
        &self,
        topic_arn: &str,
        subject: &str,
        message: &str,
    ) -> Result<(), PublishError> {
        let result = self
            .client
            .publish()
            .topic_arn(topic_arn)
            .subject(sns_subject(subject))
            .message(message)
            .send()
            .await;
        let Err(error) = result else {
            return Ok(());
        };
        let refused = error.as_service_error().is_some_and(|refusal| {
            let throttled = refusal
                .meta()
                .code()
                .is_some_and(|code| code.starts_with("Throttl"));
            !(throttled
                || refusal.is_internal_error_exception()
                || refusal.is_kms_throttling_exception())
        });
        let failure = aws_failure("SNS Publish", error);
        Err(if refused {
            PublishError::Refused(failure.message)
        } else {
            PublishError::Unavailable(failure)
        })
    }
}

/// Why a notification was not published.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PublishError {
    /// For good: the topic does not exist, or refuses the message.
    #[error("{0}")]
    Refused(String),
    /// For now: SNS could not be reached, or throttled.
    #[error(transparent)]
    Unavailable(ApiError),
}

/// A subject SNS accepts: fewer than 100 characters, none of them a line break or
/// other control character.
fn sns_subject(subject: &str) -> String {
    subject
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(99)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_fit_what_sns_accepts() {
        let long = format!("SUCCEEDED: Gantry d-1 in us-east-1 to {}", "a".repeat(100));
        assert_eq!(sns_subject(&long).chars().count(), 99);
        assert_eq!(sns_subject("two\nlines\t"), "two lines ");
    }
}
