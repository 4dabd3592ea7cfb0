//! Errors as callers see them: CodeDeploy's exception names with one clear sentence.

use serde::{Deserialize, Serialize};

/// The exceptions Gantry answers with, each named as CodeDeploy names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Exception {
    ApplicationAlreadyExists,
    ApplicationDoesNotExist,
    AlarmsLimitExceeded,
    ApplicationNameRequired,
    ArnNotSupported,
    BatchLimitExceeded,
    BucketNameFilterRequired,
    ConcurrentModification,
    DeploymentAlreadyCompleted,
    DeploymentAlreadyStarted,
    DeploymentConfigAlreadyExists,
    DeploymentConfigDoesNotExist,
    DeploymentConfigInUse,
    DeploymentConfigNameRequired,
    DeploymentDoesNotExist,
    DeploymentGroupAlreadyExists,
    DeploymentGroupDoesNotExist,
    DeploymentGroupNameRequired,
    DeploymentIdRequired,
    DeploymentIsNotInReadyState,
    DeploymentLimitExceeded,
    DeploymentTargetDoesNotExist,
    DeploymentTargetIdRequired,
    DeploymentTargetListSizeExceeded,
    DescriptionTooLong,
    IamArnRequired,
    IamSessionArnAlreadyRegistered,
    IamUserArnAlreadyRegistered,
    InstanceDoesNotExist,
    InstanceIdRequired,
    InstanceLimitExceeded,
    InstanceNameAlreadyRegistered,
    InstanceNameRequired,
    InstanceNotRegistered,
    InternalFailure,
    InvalidAlarmConfig,
    InvalidAutoScalingGroup,
    InvalidArn,
    InvalidAutoRollbackConfig,
    InvalidBlueGreenDeploymentConfiguration,
    InvalidBucketNameFilter,
    InvalidComputePlatform,
    InvalidDeployedStateFilter,
    InvalidDeploymentConfigName,
    InvalidDeploymentId,
    InvalidDeploymentStatus,
    InvalidDeploymentStyle,
    InvalidDeploymentWaitType,
    InvalidFileExistsBehavior,
    InvalidIamSessionArn,
    InvalidIamUserArn,
    InvalidInput,
    InvalidInstanceName,
    InvalidInstanceStatus,
    InvalidInstanceType,
    InvalidKeyPrefixFilter,
    InvalidLifecycleEventHookExecutionId,
    InvalidLifecycleEventHookExecutionStatus,
    InvalidLoadBalancerInfo,
    InvalidMinimumHealthyHostValue,
    InvalidNextToken,
    InvalidOperation,
    InvalidAutoScalingGroupProcessToSuspend,
    OperationNotSupported,
    InvalidRevision,
    InvalidSortBy,
    InvalidSortOrder,
    InvalidTag,
    InvalidTagsToAdd,
    InvalidTargetInstances,
    InvalidTimeRange,
    InvalidTrafficRoutingConfiguration,
    InvalidTriggerConfig,
    InvalidZonalDeploymentConfiguration,
    MultipleIamArnsProvided,
    ResourceArnRequired,
    ResourceNotFound,
    RevisionDoesNotExist,
    RevisionRequired,
    TagLimitExceeded,
    TagRequired,
    /// AWS's common error for a request to retry later (here: GitHub's rate limit).
    Throttling,
    TriggerTargetsLimitExceeded,
    LifecycleEventAlreadyCompleted,
    UnsupportedActionForDeploymentType,
}

impl Exception {
    /// CodeDeploy's name for it: the Lambda `errorType`.
    pub fn name(self) -> &'static str {
        match self {
            Self::AlarmsLimitExceeded => "AlarmsLimitExceededException",
            Self::ApplicationAlreadyExists => "ApplicationAlreadyExistsException",
            Self::ApplicationDoesNotExist => "ApplicationDoesNotExistException",
            Self::ApplicationNameRequired => "ApplicationNameRequiredException",
            Self::ArnNotSupported => "ArnNotSupportedException",
            Self::BatchLimitExceeded => "BatchLimitExceededException",
            Self::BucketNameFilterRequired => "BucketNameFilterRequiredException",
            Self::ConcurrentModification => "ConcurrentModificationException",
            Self::DeploymentAlreadyCompleted => "DeploymentAlreadyCompletedException",
            Self::DeploymentAlreadyStarted => "DeploymentAlreadyStartedException",
            Self::DeploymentConfigAlreadyExists => "DeploymentConfigAlreadyExistsException",
            Self::DeploymentConfigDoesNotExist => "DeploymentConfigDoesNotExistException",
            Self::DeploymentConfigInUse => "DeploymentConfigInUseException",
            Self::DeploymentConfigNameRequired => "DeploymentConfigNameRequiredException",
            Self::DeploymentDoesNotExist => "DeploymentDoesNotExistException",
            Self::DeploymentGroupAlreadyExists => "DeploymentGroupAlreadyExistsException",
            Self::DeploymentGroupDoesNotExist => "DeploymentGroupDoesNotExistException",
            Self::DeploymentGroupNameRequired => "DeploymentGroupNameRequiredException",
            Self::DeploymentIdRequired => "DeploymentIdRequiredException",
            Self::DeploymentIsNotInReadyState => "DeploymentIsNotInReadyStateException",
            Self::DeploymentLimitExceeded => "DeploymentLimitExceededException",
            Self::DeploymentTargetDoesNotExist => "DeploymentTargetDoesNotExistException",
            Self::DeploymentTargetIdRequired => "DeploymentTargetIdRequiredException",
            Self::DeploymentTargetListSizeExceeded => "DeploymentTargetListSizeExceededException",
            Self::DescriptionTooLong => "DescriptionTooLongException",
            Self::IamArnRequired => "IamArnRequiredException",
            Self::IamSessionArnAlreadyRegistered => "IamSessionArnAlreadyRegisteredException",
            Self::IamUserArnAlreadyRegistered => "IamUserArnAlreadyRegisteredException",
            Self::InstanceDoesNotExist => "InstanceDoesNotExistException",
            Self::InstanceIdRequired => "InstanceIdRequiredException",
            Self::InstanceLimitExceeded => "InstanceLimitExceededException",
            Self::InstanceNameAlreadyRegistered => "InstanceNameAlreadyRegisteredException",
            Self::InstanceNameRequired => "InstanceNameRequiredException",
            Self::InstanceNotRegistered => "InstanceNotRegisteredException",
            Self::InternalFailure => "InternalFailure",
            Self::InvalidAlarmConfig => "InvalidAlarmConfigException",
            Self::InvalidAutoScalingGroup => "InvalidAutoScalingGroupException",
            Self::InvalidArn => "InvalidArnException",
            Self::InvalidAutoRollbackConfig => "InvalidAutoRollbackConfigException",
            Self::InvalidBlueGreenDeploymentConfiguration => {
                "InvalidBlueGreenDeploymentConfigurationException"
            }
            Self::InvalidBucketNameFilter => "InvalidBucketNameFilterException",
            Self::InvalidComputePlatform => "InvalidComputePlatformException",
            Self::InvalidDeployedStateFilter => "InvalidDeployedStateFilterException",
            Self::InvalidDeploymentConfigName => "InvalidDeploymentConfigNameException",
            Self::InvalidDeploymentId => "InvalidDeploymentIdException",
            Self::InvalidDeploymentStatus => "InvalidDeploymentStatusException",
            Self::InvalidDeploymentStyle => "InvalidDeploymentStyleException",
            Self::InvalidDeploymentWaitType => "InvalidDeploymentWaitTypeException",
            Self::InvalidFileExistsBehavior => "InvalidFileExistsBehaviorException",
            Self::InvalidIamSessionArn => "InvalidIamSessionArnException",
            Self::InvalidIamUserArn => "InvalidIamUserArnException",
            Self::InvalidInput => "InvalidInputException",
            Self::InvalidInstanceName => "InvalidInstanceNameException",
            Self::InvalidInstanceStatus => "InvalidInstanceStatusException",
            Self::InvalidInstanceType => "InvalidInstanceTypeException",
            Self::InvalidKeyPrefixFilter => "InvalidKeyPrefixFilterException",
            Self::InvalidLifecycleEventHookExecutionId => {
                "InvalidLifecycleEventHookExecutionIdException"
            }
            Self::InvalidLifecycleEventHookExecutionStatus => {
                "InvalidLifecycleEventHookExecutionStatusException"
            }
            Self::InvalidLoadBalancerInfo => "InvalidLoadBalancerInfoException",
            Self::InvalidMinimumHealthyHostValue => "InvalidMinimumHealthyHostValueException",
            Self::InvalidNextToken => "InvalidNextTokenException",
            Self::InvalidOperation => "InvalidOperationException",
            Self::InvalidAutoScalingGroupProcessToSuspend => {
                "InvalidAutoScalingGroupProcessToSuspendException"
            }
            Self::OperationNotSupported => "OperationNotSupportedException",
            Self::InvalidRevision => "InvalidRevisionException",
            Self::InvalidSortBy => "InvalidSortByException",
            Self::InvalidSortOrder => "InvalidSortOrderException",
            Self::InvalidTag => "InvalidTagException",
            Self::InvalidTagsToAdd => "InvalidTagsToAddException",
            Self::InvalidTargetInstances => "InvalidTargetInstancesException",
            Self::InvalidTimeRange => "InvalidTimeRangeException",
            Self::InvalidTrafficRoutingConfiguration => {
                "InvalidTrafficRoutingConfigurationException"
            }
            Self::InvalidTriggerConfig => "InvalidTriggerConfigException",
            Self::InvalidZonalDeploymentConfiguration => {
                "InvalidZonalDeploymentConfigurationException"
            }
            Self::MultipleIamArnsProvided => "MultipleIamArnsProvidedException",
            Self::ResourceArnRequired => "ResourceArnRequiredException",
            Self::ResourceNotFound => "ResourceNotFoundException",
            Self::RevisionDoesNotExist => "RevisionDoesNotExistException",
            Self::RevisionRequired => "RevisionRequiredException",
            Self::TagLimitExceeded => "TagLimitExceededException",
            Self::TagRequired => "TagRequiredException",
            Self::Throttling => "ThrottlingException",
            Self::TriggerTargetsLimitExceeded => "TriggerTargetsLimitExceededException",
            Self::LifecycleEventAlreadyCompleted => "LifecycleEventAlreadyCompletedException",
            Self::UnsupportedActionForDeploymentType => {
                "UnsupportedActionForDeploymentTypeException"
            }
        }
    }
}

impl std::fmt::Display for Exception {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl Serialize for Exception {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.name())
    }
}

/// Tests and callers may compare with the name as CodeDeploy spells it.
impl PartialEq<&str> for Exception {
    fn eq(&self, other: &&str) -> bool {
        self.name() == *other
    }
}

/// A failed invocation's answer as its caller reads it: an [`ApiError`] as the Lambda
/// runtime (or gantry-local) renders it. `errorType` is open, as Lambda answers with its
/// own (`Sandbox.Timedout`, `Function.ResponseSizeTooLarge`) besides CodeDeploy's
/// exceptions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FunctionError {
    pub error_type: String,
    pub error_message: String,
}

/// An error a handler returns. `code` is CodeDeploy's exception (the Lambda
/// `errorType`), `message` says what was wrong and what is allowed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[error("{code}: {message}")]
pub struct ApiError {
    #[serde(rename = "errorType")]
    pub code: Exception,
    #[serde(rename = "errorMessage")]
    pub message: String,
}

impl ApiError {
    pub fn new(code: Exception, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }

    /// Input that does not have the documented shape.
    pub fn invalid_input(message: impl Into<String>) -> Self {
        Self::new(Exception::InvalidInput, message)
    }

    pub fn application_missing(name: &str) -> Self {
        Self::new(
            Exception::ApplicationDoesNotExist,
            format!("applicationName: no application named {name:?}"),
        )
    }

    pub fn group_missing(application: &str, name: &str) -> Self {
        Self::new(
            Exception::DeploymentGroupDoesNotExist,
            format!(
                "deploymentGroupName: application {application:?} has no deployment group named {name:?}"
            ),
        )
    }

    pub fn deployment_missing(id: &str) -> Self {
        Self::new(
            Exception::DeploymentDoesNotExist,
            format!("deploymentId: no deployment {id}"),
        )
    }

    /// Something went wrong on our side or AWS's; the caller may retry.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(Exception::InternalFailure, message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::reads_and_writes_back;
    use serde_json::json;

    #[test]
    fn an_api_error_reads_as_the_function_error_its_caller_gets() {
        let error = ApiError::deployment_missing("d-A1B2C3D4E");
        let read: FunctionError = reads_and_writes_back(serde_json::to_value(&error).unwrap());
        assert_eq!(read.error_type, "DeploymentDoesNotExistException");
        assert_eq!(read.error_message, error.message);
        // Lambda's own errors, as it answers a function that ran out of time.
        let timed_out: FunctionError = reads_and_writes_back(json!({
            "errorType": "Sandbox.Timedout",
            "errorMessage": "Task timed out after 30.00 seconds"
        }));
        assert_eq!(timed_out.error_type, "Sandbox.Timedout");
    }
}
