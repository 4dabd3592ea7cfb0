//! Secrets named by ARN: an AWS Secrets Manager secret (its `SecretString`) or an SSM
//! Parameter Store parameter (a `SecureString`, decrypted), read with the caller's own
//! credentials, so what may read it is the caller's IAM policy.

use aws_config::SdkConfig;

/// Where a secret is kept, by the service its ARN names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecretStore {
    SecretsManager,
    ParameterStore,
}

/// The store `arn` names: `arn:PARTITION:secretsmanager:REGION:ACCOUNT:secret:NAME` or
/// `arn:PARTITION:ssm:REGION:ACCOUNT:parameter/NAME`. `field` names the setting in the
/// error.
pub fn store_of(field: &str, arn: &str) -> Result<SecretStore, String> {
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    let named = |rest: &str, prefix: &str| rest.len() > prefix.len() && rest.starts_with(prefix);
    match parts.as_slice() {
        ["arn", partition, "secretsmanager", region, account, rest]
            if !partition.is_empty()
                && !region.is_empty()
                && !account.is_empty()
                && named(rest, "secret:") =>
        {
            // A policy names the whole ARN: a partial one reads, but is never allowed.
            let suffix = rest.rsplit_once('-').map(|(_, suffix)| suffix);
            if !suffix.is_some_and(|s| s.len() == 6 && s.chars().all(|c| c.is_ascii_alphanumeric()))
            {
                return Err(format!(
                    "{field}: {arn:?} is a partial ARN; give the secret's full ARN, with the six characters Secrets Manager adds to its name (arn:aws:secretsmanager:REGION:ACCOUNT:secret:NAME-AbCdEf)"
                ));
            }
            Ok(SecretStore::SecretsManager)
        }
        ["arn", partition, "ssm", region, account, rest]
            if !partition.is_empty()
                && !region.is_empty()
                && !account.is_empty()
                && named(rest, "parameter/") =>
        {
            Ok(SecretStore::ParameterStore)
        }
        _ => Err(format!(
            "{field}: {arn:?} is not the ARN of a Secrets Manager secret \
             (arn:aws:secretsmanager:REGION:ACCOUNT:secret:NAME) or of an SSM parameter \
             (arn:aws:ssm:REGION:ACCOUNT:parameter/NAME)"
        )),
    }
}

/// The text of the secret `arn` (see [`store_of`]). Errors name `field` and the ARN,
/// never the secret.
pub async fn read(config: &SdkConfig, field: &str, arn: &str) -> Result<String, String> {
    let cannot = |error: String| format!("{field}: cannot read {arn}: {error}");
    let text = match store_of(field, arn)? {
        SecretStore::SecretsManager => aws_sdk_secretsmanager::Client::new(config)
            .get_secret_value()
            .secret_id(arn)
            .send()
            .await
            .map_err(|error| cannot(aws_sdk_s3::error::DisplayErrorContext(&error).to_string()))?
            .secret_string
            .ok_or_else(|| cannot("the secret holds no SecretString".into()))?,
        SecretStore::ParameterStore => aws_sdk_ssm::Client::new(config)
            .get_parameter()
            .name(arn)
            .with_decryption(true)
            .send()
            .await
            .map_err(|error| cannot(aws_sdk_s3::error::DisplayErrorContext(&error).to_string()))?
            .parameter
            .and_then(|parameter| parameter.value)
            .ok_or_else(|| cannot("the parameter holds no value".into()))?,
    };
    let text = text.trim().to_owned();
    if text.is_empty() {
        return Err(cannot("it is empty".into()));
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arns_name_their_store() {
        assert_eq!(
            store_of(
                "f",
                "arn:aws:secretsmanager:eu-west-1:123456789012:secret:gh-AbCdEf"
            ),
            Ok(SecretStore::SecretsManager)
        );
        assert_eq!(
            store_of(
                "f",
                "arn:aws-cn:ssm:cn-north-1:123456789012:parameter/ci/github"
            ),
            Ok(SecretStore::ParameterStore)
        );
        for bad in [
            "",
            "gh-token",
            "arn:aws:s3:::bucket/key",
            "arn:aws:ssm:eu-west-1:123456789012:parameter/",
            "arn:aws:secretsmanager:eu-west-1::secret:x",
            "arn:aws:secretsmanager:eu-west-1:123456789012:secret:gh",
        ] {
            let error = store_of("GitHubTokenSecret", bad).unwrap_err();
            assert!(error.starts_with("GitHubTokenSecret: "), "{error}");
        }
    }
}
