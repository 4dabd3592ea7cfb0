//! IAM: the identity an on-premises instance reports with, as SQS's SenderId.

use super::aws_failure;
use crate::error::{ApiError, Exception};
use gantry_core::identity::IamIdentity;

/// Resolves the IAM identity an on-premises instance is registered with to the
/// `SenderId` SQS will stamp its reports with (see [`gantry_core::identity`]).
#[derive(Clone)]
pub struct Identities {
    iam: aws_sdk_iam::Client,
}

impl Identities {
    pub fn new(iam: aws_sdk_iam::Client) -> Self {
        Self { iam }
    }

    /// The unique id of the role in the instance profile `arn`
    /// (`arn:aws:iam::<account>:instance-profile[/path]/<name>`); None when the profile
    /// is gone or holds no role.
    pub async fn instance_profile_role(&self, arn: &str) -> Result<Option<String>, ApiError> {
        let Some(name) = arn.rsplit('/').next().filter(|name| !name.is_empty()) else {
            return Ok(None);
        };
        match self
            .iam
            .get_instance_profile()
            .instance_profile_name(name)
            .send()
            .await
        {
            Ok(output) => Ok(output
                .instance_profile()
                .and_then(|profile| profile.roles().first())
                .map(|role| role.role_id().to_owned())),
            Err(error)
                if error
                    .as_service_error()
                    .is_some_and(|e| e.is_no_such_entity_exception()) =>
            {
                Ok(None)
            }
            Err(error) => Err(aws_failure("IAM GetInstanceProfile", error)),
        }
    }

    /// `arn` is the ARN `identity` was parsed from; the user or role must exist.
    pub async fn sender_id(&self, identity: &IamIdentity, arn: &str) -> Result<String, ApiError> {
        let unique_id = match identity {
            IamIdentity::User { name, .. } => {
                let found = self.iam.get_user().user_name(name).send().await;
                let missing = || {
                    ApiError::new(
                        Exception::InvalidIamUserArn,
                        format!("iamUserArn: IAM has no user {arn}"),
                    )
                };
                match found {
                    Ok(output) => {
                        let user = output.user().ok_or_else(missing)?;
                        // The name matched; a different path is a different user.
                        if user.arn() != arn {
                            return Err(missing());
                        }
                        user.user_id().to_owned()
                    }
                    Err(error)
                        if error
                            .as_service_error()
                            .is_some_and(|e| e.is_no_such_entity_exception()) =>
                    {
                        return Err(missing());
                    }
                    Err(error) => return Err(aws_failure("IAM GetUser", error)),
                }
            }
            IamIdentity::Session { role, .. } => {
                let found = self.iam.get_role().role_name(role).send().await;
                let missing = || {
                    ApiError::new(
                        Exception::InvalidIamSessionArn,
                        format!("iamSessionArn: IAM has no role {role:?} for {arn}"),
                    )
                };
                match found {
                    Ok(output) => output.role().ok_or_else(missing)?.role_id().to_owned(),
                    Err(error)
                        if error
                            .as_service_error()
                            .is_some_and(|e| e.is_no_such_entity_exception()) =>
                    {
                        return Err(missing());
                    }
                    Err(error) => return Err(aws_failure("IAM GetRole", error)),
                }
            }
        };
        Ok(identity.sender_id(&unique_id))
    }
}
