//! EC2 instances' identity for tests: an instance profile and the role in it. Gantry
//! takes an EC2 instance's reports only from its instance profile's role, in a session
//! named for the instance (`<role id>:<instance id>`), and fails an instance without a
//! profile at the start of a deployment, so every test instance that deploys needs one.

/// Creates role `name` and instance profile `name` holding it; returns the role's
/// unique id (`AROA…`), the first half of the SenderId its instances report with.
pub async fn host_role(config: &aws_config::SdkConfig, name: &str) -> String {
    let iam = aws_sdk_iam::Client::new(config);
    let role_id = iam
        .create_role()
        .role_name(name)
        .assume_role_policy_document("{}")
        .send()
        .await
        .expect("host role")
        .role
        .expect("role")
        .role_id;
    iam.create_instance_profile()
        .instance_profile_name(name)
        .send()
        .await
        .expect("instance profile");
    iam.add_role_to_instance_profile()
        .instance_profile_name(name)
        .role_name(name)
        .send()
        .await
        .expect("role in instance profile");
    role_id
}

/// Instance profile `name` as RunInstances and launch templates take it.
pub fn by_name(name: &str) -> aws_sdk_ec2::types::IamInstanceProfileSpecification {
    aws_sdk_ec2::types::IamInstanceProfileSpecification::builder()
        .name(name)
        .build()
}
