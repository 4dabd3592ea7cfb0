//! Who may speak for a host.
//!
//! Every host may send to the shared reports queue, so a report's `instanceId` proves
//! nothing. SQS stamps each message with the IAM identity that signed it (`SenderId`):
//! an IAM user's unique id (`AIDA...`), or a role's unique id and session name
//! (`AROA...:session`). An EC2 instance's instance-role credentials use the instance id
//! as the session name; an on-premises instance is registered with the IAM user or role
//! session its agent runs as. A report counts only when its sender is its host's own.

use serde::{Deserialize, Serialize};

/// The identity a host's reports must come from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Sender {
    /// An EC2 instance without a known instance profile: nobody. Any principal allowed
    /// to assume some role could name a session for it, so its reports are refused, and
    /// a deployment fails it at the start (a target stored before this rule, too).
    InstanceRole,
    /// An EC2 instance whose instance profile's role has this unique id: that role's
    /// session named for it, `<role id>:<instance id>`, and no other role's.
    InstanceRoleOf(String),
    /// An on-premises instance: the exact `SenderId` of the IAM user or role session it
    /// was registered with.
    Principal(String),
}

/// Admits nobody: what a target stored without a sender gets.
impl Default for Sender {
    fn default() -> Self {
        Self::Principal(String::new())
    }
}

impl Sender {
    /// Whether the host is an EC2 instance (its reports come from its instance role).
    pub fn is_ec2(&self) -> bool {
        matches!(self, Self::InstanceRole | Self::InstanceRoleOf(_))
    }

    /// Whether a message SQS says `sender_id` sent may speak for `instance_id`.
    pub fn admits(&self, instance_id: &str, sender_id: Option<&str>) -> bool {
        let Some(sender_id) = sender_id else {
            return false;
        };
        match self {
            Self::InstanceRole => false,
            Self::InstanceRoleOf(expected) => sender_id
                .split_once(':')
                .is_some_and(|(role_id, session)| role_id == expected && session == instance_id),
            Self::Principal(expected) => !expected.is_empty() && sender_id == expected,
        }
    }
}

impl std::fmt::Display for Sender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::InstanceRole => f.write_str("nobody (the instance has no instance profile)"),
            Self::InstanceRoleOf(role_id) => write!(f, "{role_id}:<the instance's id>"),
            Self::Principal(id) => f.write_str(id),
        }
    }
}

/// An on-premises instance's IAM identity, as RegisterOnPremisesInstance names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IamIdentity {
    /// `arn:aws:iam::<account>:user[/path]/<name>`
    User { account: String, name: String },
    /// `arn:aws:sts::<account>:assumed-role/<role>/<session>`
    Session {
        account: String,
        role: String,
        session: String,
    },
}

impl IamIdentity {
    /// Parses an `iamUserArn`; the error says what the field must look like.
    pub fn user(arn: &str) -> Result<Self, String> {
        let usage = "iamUserArn must look like arn:aws:iam::123456789012:user/NAME";
        let (account, resource) = split_arn(arn, "iam").ok_or(usage)?;
        let name = resource
            .strip_prefix("user/")
            .and_then(|path| path.rsplit('/').next())
            .filter(|name| valid_name(name, 64))
            .ok_or(usage)?;
        Ok(Self::User {
            account,
            name: name.to_owned(),
        })
    }

    /// Parses an `iamSessionArn`; the error says what the field must look like.
    pub fn session(arn: &str) -> Result<Self, String> {
        let usage =
            "iamSessionArn must look like arn:aws:sts::123456789012:assumed-role/ROLE/SESSION";
        let (account, resource) = split_arn(arn, "sts").ok_or(usage)?;
        let mut parts = resource.split('/');
        let (Some("assumed-role"), Some(role), Some(session), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(usage.to_owned());
        };
        if !valid_name(role, 64) || !valid_name(session, 64) || session.len() < 2 {
            return Err(usage.to_owned());
        }
        Ok(Self::Session {
            account,
            role: role.to_owned(),
            session: session.to_owned(),
        })
    }

    /// The `SenderId` SQS gives this identity's messages, from the unique id IAM gives
    /// the user or the role.
    pub fn sender_id(&self, unique_id: &str) -> String {
        match self {
            Self::User { .. } => unique_id.to_owned(),
            Self::Session { session, .. } => format!("{unique_id}:{session}"),
        }
    }
}

/// The account and resource of an ARN of `service` in the `aws` partitions.
fn split_arn(arn: &str, service: &str) -> Option<(String, String)> {
    let mut parts = arn.splitn(6, ':');
    let (Some("arn"), Some(partition), Some(found), Some(""), Some(account), Some(resource)) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return None;
    };
    let account_ok = account.len() == 12 && account.bytes().all(|b| b.is_ascii_digit());
    (partition.starts_with("aws") && found == service && account_ok)
        .then(|| (account.to_owned(), resource.to_owned()))
}

/// Whether `sender_id` has the shape of a `SenderId` SQS gives: an IAM unique id
/// (uppercase letters and digits, `AIDA...`, `AROA...`), alone or with a role session
/// name (`AROA...:session`, IAM's name characters, 2 to 64 of them). Anything else came
/// from no IAM identity a host could have, so its reports are dropped before any read.
pub fn is_sender_id(sender_id: &str) -> bool {
    let (unique_id, session) = match sender_id.split_once(':') {
        Some((unique_id, session)) => (unique_id, Some(session)),
        None => (sender_id, None),
    };
    let unique_id_ok = (16..=128).contains(&unique_id.len())
        && unique_id
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit());
    unique_id_ok && session.is_none_or(|session| session.len() >= 2 && valid_name(session, 64))
}

/// IAM's name characters: letters, digits and `+=,.@_-`.
fn valid_name(name: &str, max: usize) -> bool {
    !name.is_empty()
        && name.len() <= max
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+=,.@_-".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_instance_without_a_profile_admits_nobody() {
        let rule = Sender::InstanceRole;
        assert!(
            !rule.admits("i-0abc", Some("AROAEXAMPLE:i-0abc")),
            "any role's session named for it"
        );
        assert!(!rule.admits("i-0abc", Some("AROAEXAMPLE:i-0def")));
        assert!(!rule.admits("i-0abc", Some("AROAEXAMPLE:i-0abcd")));
        assert!(!rule.admits("i-0abc", Some(":i-0abc")));
        assert!(!rule.admits("i-0abc", Some("AIDAEXAMPLE")));
        assert!(!rule.admits("i-0abc", Some("i-0abc")));
        assert!(!rule.admits("i-0abc", None));
    }

    #[test]
    fn an_instance_profile_role_admits_only_its_own_session_for_the_instance() {
        let rule = Sender::InstanceRoleOf("AROAWEBHOST".into());
        assert!(rule.admits("i-0abc", Some("AROAWEBHOST:i-0abc")));
        assert!(
            !rule.admits("i-0abc", Some("AROAOTHER:i-0abc")),
            "another role"
        );
        assert!(!rule.admits("i-0abc", Some("AROAWEBHOST:i-0def")));
        assert!(!rule.admits("i-0abc", Some("AROAWEBHOST")));
        assert!(!rule.admits("i-0abc", None));
        assert!(rule.is_ec2() && Sender::InstanceRole.is_ec2());
        assert!(!Sender::Principal("AIDA".into()).is_ec2());
        let stored = serde_json::to_string(&rule).unwrap();
        assert_eq!(serde_json::from_str::<Sender>(&stored).unwrap(), rule);
        assert_eq!(
            serde_json::from_str::<Sender>("\"instanceRole\"").unwrap(),
            Sender::InstanceRole,
            "targets stored before still read"
        );
    }

    #[test]
    fn sender_ids_have_the_shape_sqs_gives() {
        for good in [
            "AIDAIT2UOQQY3AUEKVGXU",
            "AROAJ2ORXVLRV2PJ3PQSI:i-0123456789abcdef0",
            "AROAJ2ORXVLRV2PJ3PQSI:build.host@lab-7",
        ] {
            assert!(is_sender_id(good), "{good}");
        }
        for bad in [
            "",
            "AIDA",
            "aidait2uoqqy3auekvgxu",
            "AIDAIT2UOQQY3AUEKVGXU:",
            "AROAJ2ORXVLRV2PJ3PQSI:x",
            "AROAJ2ORXVLRV2PJ3PQSI:i-0abc:extra",
            "AROAJ2ORXVLRV2PJ3PQSI:i-0abc/../..",
            "AROAJ2ORXVLRV2PJ3PQSI:\u{202e}i-0abc",
            &"A".repeat(129),
        ] {
            assert!(!is_sender_id(bad), "{bad:?}");
        }
    }

    #[test]
    fn a_principal_admits_only_itself() {
        let rule = Sender::Principal("AIDAHOSTONE".into());
        assert!(rule.admits("host-1", Some("AIDAHOSTONE")));
        assert!(!rule.admits("host-1", Some("AIDAHOSTTWO")));
        assert!(!rule.admits("host-1", Some("AIDAHOSTONE:host-1")));
        assert!(!rule.admits("host-1", None));
        assert!(!Sender::Principal(String::new()).admits("host-1", Some("")));
    }

    #[test]
    fn a_target_stored_without_a_sender_admits_nobody() {
        let stored: crate::planner::Target =
            serde_json::from_str(r#"{"instanceId": "web-1", "zone": null, "standing": "Old"}"#)
                .unwrap();
        assert!(!stored.sender.admits("web-1", Some("AIDAANYONE")));
        assert!(!stored.sender.admits("web-1", Some("")));
    }

    #[test]
    fn user_arns_parse_with_or_without_a_path() {
        assert_eq!(
            IamIdentity::user("arn:aws:iam::123456789012:user/ops/hosts/web-1"),
            Ok(IamIdentity::User {
                account: "123456789012".into(),
                name: "web-1".into()
            })
        );
        for bad in [
            "web-1",
            "arn:aws:iam::123456789012:role/web-1",
            "arn:aws:sts::123456789012:user/web-1",
            "arn:aws:iam::12345:user/web-1",
            "arn:aws:iam::123456789012:user/",
            "arn:aws:iam::123456789012:user/we b",
        ] {
            let error = IamIdentity::user(bad).unwrap_err();
            assert!(
                error.starts_with("iamUserArn must look like"),
                "{bad}: {error}"
            );
        }
    }

    #[test]
    fn session_arns_parse_and_give_the_role_sessions_sender_id() {
        let identity =
            IamIdentity::session("arn:aws:sts::123456789012:assumed-role/gantry-hosts/web-1")
                .unwrap();
        assert_eq!(
            identity,
            IamIdentity::Session {
                account: "123456789012".into(),
                role: "gantry-hosts".into(),
                session: "web-1".into()
            }
        );
        assert_eq!(identity.sender_id("AROAROLE"), "AROAROLE:web-1");
        assert_eq!(
            IamIdentity::user("arn:aws:iam::123456789012:user/web-1")
                .unwrap()
                .sender_id("AIDAUSER"),
            "AIDAUSER"
        );
        for bad in [
            "arn:aws:sts::123456789012:assumed-role/gantry-hosts",
            "arn:aws:sts::123456789012:assumed-role/gantry-hosts/a/b",
            "arn:aws:sts::123456789012:role/gantry-hosts/web-1",
            "arn:aws:iam::123456789012:assumed-role/gantry-hosts/web-1",
        ] {
            assert!(IamIdentity::session(bad).is_err(), "{bad}");
        }
    }
}
