//! The command line's shape: clap's definitions of `gantry`'s global options, commands
//! and subcommands (a group's flags are [`crate::group_args`]'s).

use crate::group_args::{GroupRemovals, GroupSettings};
use crate::output::Output;
use crate::{deploy, push, tags};
use clap::{Parser, Subcommand};
use std::path::PathBuf;

#[derive(Parser)]
#[command(
    name = "gantry",
    version,
    about = "Deploy application revisions to EC2 and on-premises fleets"
)]
pub struct Cli {
    /// Where Gantry's functions are reached (gantry-local's URL); default: AWS Lambda,
    /// or AWS_ENDPOINT_URL_LAMBDA.
    #[arg(long, global = true, env = "GANTRY_ENDPOINT_URL")]
    pub endpoint_url: Option<String>,
    /// The stack whose functions to call (`<stack>-api`, ...).
    #[arg(long, global = true, env = "GANTRY_STACK")]
    pub stack: Option<String>,
    /// Output format.
    #[arg(long, global = true, value_enum, default_value_t = Output::Text)]
    pub output: Output,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Work with appspec.yml files.
    Appspec {
        #[command(subcommand)]
        command: AppspecCommand,
    },
    /// Applications.
    App {
        #[command(subcommand)]
        command: AppCommand,
    },
    /// Deployment groups.
    Group {
        #[command(subcommand)]
        command: GroupCommand,
    },
    /// Deployment configurations.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// On-premises instances.
    Instance {
        #[command(subcommand)]
        command: InstanceCommand,
    },
    /// Tags of applications, deployment groups and deployment configurations, by ARN.
    Tags {
        #[command(subcommand)]
        command: tags::TagsCommand,
    },
    /// Lint, bundle, upload and register a revision directory, or register a GitHub commit.
    Push(push::PushArgs),
    /// Deploy a revision to a group and follow it.
    Deploy(deploy::DeployArgs),
    /// A deployment's status and hosts.
    Status { deployment_id: String },
    /// A deployment's target ids (ListDeploymentTargets), optionally by status.
    Targets {
        deployment_id: String,
        /// Only targets with this status (repeat): Pending, InProgress, Succeeded,
        /// Failed, Skipped, Unknown, Ready.
        #[arg(long = "status")]
        statuses: Vec<String>,
    },
    /// One target of a deployment: its status and each lifecycle event's.
    Target {
        deployment_id: String,
        target_id: String,
    },
    /// An application's registered revisions, newest first, with when each was
    /// registered.
    Revisions {
        #[arg(long)]
        app: String,
    },
    /// A group's deployments, newest first.
    List {
        #[arg(long)]
        app: String,
        #[arg(long)]
        group: String,
    },
    /// A deployment's diagnostics and script output, per host and event.
    Logs {
        deployment_id: String,
        #[arg(long)]
        instance: Option<String>,
        #[arg(long)]
        event: Option<String>,
    },
    /// Stop a deployment.
    Stop {
        deployment_id: String,
        /// Redeploy the group's last successful revision.
        #[arg(long)]
        rollback: bool,
    },
    /// Continue a blue/green deployment that waits: reroute traffic to its replacement
    /// fleet now, or with --terminate, terminate its original fleet now.
    Continue {
        deployment_id: String,
        /// End the wait before the original fleet is terminated (TERMINATION_WAIT).
        #[arg(long)]
        terminate: bool,
    },
    /// Stop the group's deployment, if any, and redeploy its last successful revision.
    Rollback {
        #[arg(long)]
        app: String,
        #[arg(long)]
        group: String,
    },
    /// Serve CodeDeploy's own protocol on a loopback port, forwarding each call to this
    /// Gantry with your AWS credentials: the stock `aws deploy`, boto3 and the SDKs reach
    /// it with `--endpoint-url`.
    Proxy {
        /// The port to listen on (0: any free one; the URL is printed).
        #[arg(long, default_value_t = 0)]
        port: u16,
    },
    /// Serve a web console on a loopback port: applications, deployments live, hosts'
    /// lifecycle events and logs, and stop, continue, roll back and deploy. It prints
    /// the URL to open (holding a one-session token) and opens nothing by itself.
    Console {
        /// The port to listen on (0: any free one; the URL is printed).
        #[arg(long, default_value_t = 0)]
        port: u16,
    },
}

#[derive(Subcommand)]
pub enum AppspecCommand {
    /// Check an appspec file, a revision directory or a zip/tar/tgz bundle before you push it.
    ///
    /// Exits 0 when valid, 1 when invalid (one line per problem, naming the field),
    /// and 2 on usage or I/O errors.
    Lint {
        /// An appspec.yml file, a revision directory, or a bundle.
        path: PathBuf,
    },
}

#[derive(Subcommand)]
pub enum AppCommand {
    Create {
        name: String,
        /// Tag the application, KEY=VALUE (repeat).
        #[arg(long = "tag")]
        tags: Vec<String>,
        /// What it deploys to: Server (EC2 and on-premises instances, the default) or
        /// Lambda (AWS Lambda functions).
        #[arg(long, value_parser = ["Server", "Lambda"])]
        compute_platform: Option<String>,
    },
    List,
    Get {
        name: String,
    },
    /// Rename an application, with its deployment groups, revisions, tags and history
    /// (UpdateApplication); call it again to finish a rename that was interrupted.
    Rename {
        name: String,
        new_name: String,
    },
    Delete {
        name: String,
    },
}

#[derive(Subcommand)]
pub enum GroupCommand {
    Create {
        name: String,
        #[arg(long)]
        app: String,
        #[command(flatten)]
        settings: GroupSettings,
        /// Tag the group itself (not its instances), KEY=VALUE (repeat).
        #[arg(long = "tag")]
        tags: Vec<String>,
    },
    /// Change a group: what you give replaces the group's, what you leave out it keeps.
    Update {
        name: String,
        #[arg(long)]
        app: String,
        #[command(flatten)]
        settings: GroupSettings,
        #[command(flatten)]
        removals: GroupRemovals,
    },
    Get {
        name: String,
        #[arg(long)]
        app: String,
    },
    List {
        #[arg(long)]
        app: String,
    },
    Delete {
        name: String,
        #[arg(long)]
        app: String,
    },
}

#[derive(Subcommand)]
pub enum ConfigCommand {
    /// A custom configuration: --min-healthy-hosts N or --min-healthy-percent P for the
    /// Server platform, or --traffic-routing for the Lambda platform.
    Create {
        name: String,
        #[arg(long, conflicts_with_all = ["min_healthy_percent", "traffic_routing"])]
        min_healthy_hosts: Option<u32>,
        #[arg(long, conflicts_with = "traffic_routing")]
        min_healthy_percent: Option<u32>,
        /// Deploy one Availability Zone at a time, waiting this many seconds between zones.
        #[arg(long, conflicts_with = "traffic_routing")]
        zonal_monitor_seconds: Option<u64>,
        /// A Lambda configuration (computePlatform Lambda): canary:PERCENT:MINUTES,
        /// linear:PERCENT:MINUTES, all-at-once, or CodeDeploy's trafficRoutingConfig JSON.
        #[arg(long, value_parser = traffic_routing)]
        traffic_routing: Option<serde_json::Value>,
    },
    List,
    Get {
        name: String,
    },
    /// Delete a custom configuration no deployment group uses.
    Delete {
        name: String,
    },
}

#[derive(Subcommand)]
pub enum InstanceCommand {
    Register {
        name: String,
        /// The IAM user the host's agent runs as (its reports are accepted only from
        /// it): arn:aws:iam::ACCOUNT:user/NAME. Give this or --iam-session-arn.
        #[arg(
            long,
            conflicts_with = "iam_session_arn",
            required_unless_present = "iam_session_arn"
        )]
        iam_user_arn: Option<String>,
        /// The IAM role session the host's agent runs as:
        /// arn:aws:sts::ACCOUNT:assumed-role/ROLE/SESSION.
        #[arg(long)]
        iam_session_arn: Option<String>,
        /// Tags, KEY=VALUE.
        #[arg(long = "tag")]
        tags: Vec<String>,
    },
    Deregister {
        name: String,
    },
    Tag {
        name: String,
        /// KEY=VALUE.
        tags: Vec<String>,
    },
    List,
}

/// `--traffic-routing` as CodeDeploy's `trafficRoutingConfig`: `canary:10:5` is 10
/// percent first and the rest 5 minutes later, `linear:10:1` 10 percent more every
/// minute, `all-at-once` everything at once; text starting with `{` is the JSON itself.
/// Only the shape is read here; the control plane checks the numbers.
fn traffic_routing(text: &str) -> Result<serde_json::Value, String> {
    use serde_json::json;
    if text.trim_start().starts_with('{') {
        return serde_json::from_str(text).map_err(|error| format!("not JSON: {error}"));
    }
    let parts: Vec<&str> = text.split(':').collect();
    let number = |part: &str, what: &str| {
        part.parse::<u32>()
            .map_err(|_| format!("{what}: {part:?} is not a whole number"))
    };
    match parts.as_slice() {
        ["all-at-once"] => Ok(json!({"type": "AllAtOnce"})),
        ["canary", percent, minutes] => Ok(json!({
            "type": "TimeBasedCanary",
            "timeBasedCanary": {
                "canaryPercentage": number(percent, "PERCENT")?,
                "canaryInterval": number(minutes, "MINUTES")?,
            }
        })),
        ["linear", percent, minutes] => Ok(json!({
            "type": "TimeBasedLinear",
            "timeBasedLinear": {
                "linearPercentage": number(percent, "PERCENT")?,
                "linearInterval": number(minutes, "MINUTES")?,
            }
        })),
        _ => Err(
            "must be canary:PERCENT:MINUTES, linear:PERCENT:MINUTES, all-at-once, or trafficRoutingConfig JSON"
                .to_owned(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn traffic_routing_reads_each_form_as_codedeploys_json() {
        assert_eq!(
            traffic_routing("canary:10:5").unwrap(),
            json!({"type": "TimeBasedCanary", "timeBasedCanary": {"canaryPercentage": 10, "canaryInterval": 5}})
        );
        assert_eq!(
            traffic_routing("linear:25:3").unwrap(),
            json!({"type": "TimeBasedLinear", "timeBasedLinear": {"linearPercentage": 25, "linearInterval": 3}})
        );
        assert_eq!(
            traffic_routing("all-at-once").unwrap(),
            json!({"type": "AllAtOnce"})
        );
        let given = json!({"type": "TimeBasedCanary", "timeBasedCanary": {"canaryPercentage": 20, "canaryInterval": 15}});
        assert_eq!(traffic_routing(&given.to_string()).unwrap(), given);
        assert!(
            traffic_routing("canary:ten:5")
                .unwrap_err()
                .contains("PERCENT: \"ten\"")
        );
        assert!(
            traffic_routing("canary:10")
                .unwrap_err()
                .starts_with("must be")
        );
        assert!(
            traffic_routing("{oops")
                .unwrap_err()
                .starts_with("not JSON")
        );
    }

    #[test]
    fn traffic_routing_makes_a_lambda_configuration_and_excludes_the_server_flags() {
        let parsed = Cli::try_parse_from([
            "gantry",
            "config",
            "create",
            "Canary20",
            "--traffic-routing",
            "canary:20:15",
        ]);
        assert!(parsed.is_ok());
        for server_flag in [
            "--min-healthy-hosts",
            "--min-healthy-percent",
            "--zonal-monitor-seconds",
        ] {
            let parsed = Cli::try_parse_from([
                "gantry",
                "config",
                "create",
                "Mixed",
                "--traffic-routing",
                "all-at-once",
                server_flag,
                "1",
            ]);
            assert!(parsed.is_err(), "{server_flag} with --traffic-routing");
        }
    }

    #[test]
    fn the_command_line_is_well_formed() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
