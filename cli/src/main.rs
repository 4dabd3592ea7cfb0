//! `gantry`: the command line for Gantry deployments.
//!
//! Every command but `appspec lint` talks to Gantry's functions through the Lambda
//! Invoke API: a deployed stack (`--stack`) or gantry-local (`--endpoint-url`).

mod client;
mod deploy;
mod lint;
mod push;
mod reads;
mod tags;

use clap::{Args, Parser, Subcommand, ValueEnum};
use client::Gantry;
use serde_json::{Value, json};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "gantry",
    version,
    about = "Deploy application revisions to EC2 and on-premises fleets"
)]
struct Cli {
    /// Where Gantry's functions are reached (gantry-local's URL); default: AWS Lambda,
    /// or AWS_ENDPOINT_URL_LAMBDA.
    #[arg(long, global = true, env = "GANTRY_ENDPOINT_URL")]
    endpoint_url: Option<String>,
    /// The stack whose functions to call (`<stack>-api`, ...).
    #[arg(long, global = true, env = "GANTRY_STACK")]
    stack: Option<String>,
    /// Output format.
    #[arg(long, global = true, value_enum, default_value_t = Output::Text)]
    output: Output,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
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
    /// Lint, bundle, upload and register a revision directory.
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
}

#[derive(Subcommand)]
enum AppspecCommand {
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
enum AppCommand {
    Create {
        name: String,
        /// Tag the application, KEY=VALUE (repeat).
        #[arg(long = "tag")]
        tags: Vec<String>,
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

#[derive(Args)]
struct GroupSettings {
    /// Deployment configuration (default CodeDeployDefault.OneAtATime).
    #[arg(long)]
    config: Option<String>,
    /// On-premises instances with this tag, KEY=VALUE (repeat: any matches).
    #[arg(long = "on-prem-tag")]
    on_prem_tags: Vec<String>,
    /// EC2 instances with this tag, KEY=VALUE (repeat: any matches).
    #[arg(long = "ec2-tag")]
    ec2_tags: Vec<String>,
    /// One list of an on-premises tag set: KEY=VALUE[,KEY=VALUE..], any of which matches.
    /// Repeat up to three times; an instance must match every list.
    #[arg(long = "on-prem-tag-set")]
    on_prem_tag_sets: Vec<String>,
    /// One list of an EC2 tag set, as --on-prem-tag-set.
    #[arg(long = "ec2-tag-set")]
    ec2_tag_sets: Vec<String>,
    /// Auto Scaling groups whose instances to deploy to.
    #[arg(long = "asg")]
    auto_scaling_groups: Vec<String>,
    /// Roll back automatically when a deployment fails.
    #[arg(long)]
    auto_rollback: bool,
    /// Notify an SNS topic: NAME=TOPIC_ARN (all events).
    #[arg(long = "trigger")]
    triggers: Vec<String>,
}

/// What `group update` takes out of the group's targets. (Its arguments have ids of
/// their own: clap names an argument by its field, and GroupSettings has the same
/// fields.)
#[derive(Args, Default)]
struct GroupRemovals {
    /// Stop deploying to on-premises instances with this tag, KEY=VALUE (repeat); the
    /// group's other on-premises tags stay.
    #[arg(long = "remove-on-prem-tag", id = "remove_on_prem_tags")]
    on_prem_tags: Vec<String>,
    /// Stop deploying to EC2 instances with this tag, KEY=VALUE (repeat).
    #[arg(long = "remove-ec2-tag", id = "remove_ec2_tags")]
    ec2_tags: Vec<String>,
    /// Stop deploying to this Auto Scaling group's instances (repeat); its launch hook
    /// is removed.
    #[arg(long = "remove-asg", id = "remove_auto_scaling_groups")]
    auto_scaling_groups: Vec<String>,
    /// Remove all of one kind of target (repeat): the group is sent an empty list, as
    /// CodeDeploy removes a list given empty.
    #[arg(long = "clear", value_enum)]
    cleared: Vec<TargetList>,
}

/// A list of a group's targets, as `group update --clear` names it.
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum TargetList {
    /// onPremisesInstanceTagFilters.
    OnPremTags,
    /// ec2TagFilters.
    Ec2Tags,
    /// onPremisesTagSet.
    OnPremTagSets,
    /// ec2TagSet.
    Ec2TagSets,
    /// autoScalingGroups (their launch hooks are removed).
    Asgs,
}

impl TargetList {
    /// The input field, its empty value, and the flag that gives it.
    fn field(self) -> (&'static str, Value, &'static str) {
        match self {
            Self::OnPremTags => ("onPremisesInstanceTagFilters", json!([]), "--on-prem-tag"),
            Self::Ec2Tags => ("ec2TagFilters", json!([]), "--ec2-tag"),
            Self::OnPremTagSets => (
                "onPremisesTagSet",
                json!({"onPremisesTagSetList": []}),
                "--on-prem-tag-set",
            ),
            Self::Ec2TagSets => ("ec2TagSet", json!({"ec2TagSetList": []}), "--ec2-tag-set"),
            Self::Asgs => ("autoScalingGroups", json!([]), "--asg"),
        }
    }
}

impl GroupRemovals {
    fn is_empty(&self) -> bool {
        self.on_prem_tags.is_empty()
            && self.ec2_tags.is_empty()
            && self.auto_scaling_groups.is_empty()
    }

    /// Sets each cleared list of `input` empty; one `input` gives (from its flag) is a
    /// contradiction.
    fn clear(&self, mut input: Value) -> anyhow::Result<Value> {
        for list in &self.cleared {
            let (field, empty, flag) = list.field();
            if input.get(field).is_some_and(|given| *given != empty) {
                let name = list
                    .to_possible_value()
                    .map(|value| value.get_name().to_owned())
                    .unwrap_or_default();
                anyhow::bail!("--clear {name}: and {flag} both given; give one of them");
            }
            input[field] = empty;
        }
        Ok(input)
    }

    /// Takes the removed items out of `input`'s lists, or, where `input` does not give
    /// a list, out of the group's own (`current`, its deploymentGroupInfo), and gives
    /// the list that is left (empty, if it removes all: CodeDeploy removes a list given
    /// empty and keeps one left out).
    fn apply(&self, mut input: Value, current: &Value) -> anyhow::Result<Value> {
        for (field, flag, removed) in [
            (
                "onPremisesInstanceTagFilters",
                "--remove-on-prem-tag",
                &self.on_prem_tags,
            ),
            ("ec2TagFilters", "--remove-ec2-tag", &self.ec2_tags),
        ] {
            if removed.is_empty() {
                continue;
            }
            let mut filters = input
                .get(field)
                .or_else(|| current.get(field))
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            for pair in removed {
                let (key, value) = key_value(flag, pair)?;
                let index = filters
                    .iter()
                    .position(|filter| {
                        filter["Key"] == key.as_str() && filter["Value"] == value.as_str()
                    })
                    .ok_or_else(|| {
                        anyhow::anyhow!("{flag}: the group has no {field} entry {pair}")
                    })?;
                filters.remove(index);
            }
            input[field] = Value::Array(filters);
        }
        if !self.auto_scaling_groups.is_empty() {
            let mut groups: Vec<String> = match input.get("autoScalingGroups") {
                Some(given) => serde_json::from_value(given.clone())?,
                None => current["autoScalingGroups"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|group| group["name"].as_str().map(str::to_owned))
                    .collect(),
            };
            for removed in &self.auto_scaling_groups {
                let index = groups
                    .iter()
                    .position(|group| group == removed)
                    .ok_or_else(|| {
                        anyhow::anyhow!("--remove-asg: the group does not list {removed}")
                    })?;
                groups.remove(index);
            }
            input["autoScalingGroups"] = json!(groups);
        }
        Ok(input)
    }
}

#[derive(Subcommand)]
enum GroupCommand {
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
enum ConfigCommand {
    /// A custom configuration: --min-healthy-hosts N or --min-healthy-percent P.
    Create {
        name: String,
        #[arg(long, conflicts_with = "min_healthy_percent")]
        min_healthy_hosts: Option<u32>,
        #[arg(long)]
        min_healthy_percent: Option<u32>,
        /// Deploy one Availability Zone at a time, waiting this many seconds between zones.
        #[arg(long)]
        zonal_monitor_seconds: Option<u64>,
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
enum InstanceCommand {
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

fn key_value(flag: &str, pair: &str) -> anyhow::Result<(String, String)> {
    pair.split_once('=')
        .map(|(key, value)| (key.to_owned(), value.to_owned()))
        .filter(|(key, _)| !key.is_empty())
        .ok_or_else(|| anyhow::anyhow!("{flag}: expected KEY=VALUE, found {pair:?}"))
}

fn tag_filters(flag: &str, pairs: &[String]) -> anyhow::Result<Value> {
    let filters = pairs
        .iter()
        .map(|pair| {
            key_value(flag, pair)
                .map(|(key, value)| json!({"Key": key, "Value": value, "Type": "KEY_AND_VALUE"}))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    Ok(Value::Array(filters))
}

/// A tag set: each `lists` entry is a comma-separated list of KEY=VALUE filters.
fn tag_set(flag: &str, lists: &[String]) -> anyhow::Result<Value> {
    lists
        .iter()
        .map(|list| {
            let pairs: Vec<String> = list.split(',').map(str::to_owned).collect();
            tag_filters(flag, &pairs)
        })
        .collect::<anyhow::Result<Vec<_>>>()
        .map(Value::Array)
}

impl GroupSettings {
    fn input(&self, mut input: Value) -> anyhow::Result<Value> {
        if let Some(config) = &self.config {
            input["deploymentConfigName"] = json!(config);
        }
        if !self.on_prem_tags.is_empty() {
            input["onPremisesInstanceTagFilters"] =
                tag_filters("--on-prem-tag", &self.on_prem_tags)?;
        }
        if !self.ec2_tags.is_empty() {
            input["ec2TagFilters"] = tag_filters("--ec2-tag", &self.ec2_tags)?;
        }
        if !self.on_prem_tag_sets.is_empty() {
            input["onPremisesTagSet"] = json!({
                "onPremisesTagSetList": tag_set("--on-prem-tag-set", &self.on_prem_tag_sets)?
            });
        }
        if !self.ec2_tag_sets.is_empty() {
            input["ec2TagSet"] =
                json!({"ec2TagSetList": tag_set("--ec2-tag-set", &self.ec2_tag_sets)?});
        }
        if !self.auto_scaling_groups.is_empty() {
            input["autoScalingGroups"] = json!(self.auto_scaling_groups);
        }
        if self.auto_rollback {
            input["autoRollbackConfiguration"] = json!({"enabled": true, "events": ["DEPLOYMENT_FAILURE", "DEPLOYMENT_STOP_ON_REQUEST"]});
        }
        if !self.triggers.is_empty() {
            let triggers = self
                .triggers
                .iter()
                .map(|pair| {
                    key_value("--trigger", pair).map(|(name, arn)| {
                        json!({
                            "triggerName": name,
                            "triggerTargetArn": arn,
                            "triggerEvents": ["DeploymentStart", "DeploymentSuccess", "DeploymentFailure", "DeploymentStop", "DeploymentRollback", "InstanceStart", "InstanceSuccess", "InstanceFailure"],
                        })
                    })
                })
                .collect::<anyhow::Result<Vec<_>>>()?;
            input["triggerConfigurations"] = Value::Array(triggers);
        }
        Ok(input)
    }
}

/// Prints an operation's output: the JSON itself, or `text` for people.
fn show(output: Output, value: &Value, text: impl FnOnce(&Value) -> String) {
    match output {
        Output::Json => {
            print_line(&serde_json::to_string_pretty(value).expect("JSON values print"))
        }
        Output::Text => {
            let text = text(value);
            if !text.is_empty() {
                print_line(&text);
            }
        }
    }
}

/// Prints a line to stdout. A reader that went away (`gantry list ... | head -1`) ends
/// the command quietly, as it does other Unix tools, rather than in a panic.
fn print_line(text: &str) {
    use std::io::Write;
    if let Err(error) = writeln!(std::io::stdout().lock(), "{text}") {
        if error.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("gantry: writing the output: {error}");
        std::process::exit(1);
    }
}

fn lines(values: &Value) -> String {
    values
        .as_array()
        .map(|items| {
            items
                .iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join("\n")
        })
        .unwrap_or_default()
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Command::Appspec {
        command: AppspecCommand::Lint { path },
    } = &cli.command
    {
        return lint::run(path);
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("gantry: {error}");
            ExitCode::from(2)
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let gantry = Gantry::connect(cli.endpoint_url.as_deref(), cli.stack.as_deref()).await;
    let output = cli.output;
    let ok = ExitCode::SUCCESS;
    match cli.command {
        Command::Appspec { .. } => unreachable!("handled before the runtime starts"),
        Command::App { command } => match command {
            AppCommand::Create { name, tags } => {
                let mut input = json!({"applicationName": name});
                if !tags.is_empty() {
                    input["tags"] = tags::tag_list("--tag", &tags)?;
                }
                let created = gantry.api("CreateApplication", input).await?;
                show(output, &created, |_| format!("created application {name}"));
            }
            AppCommand::List => {
                let listed = gantry
                    .list_all("ListApplications", json!({}), "applications")
                    .await?;
                show(output, &listed, |v| lines(&v["applications"]));
            }
            AppCommand::Get { name } => {
                let got = gantry
                    .api("GetApplication", json!({"applicationName": name}))
                    .await?;
                show(output, &got, |v| format!("{:#}", v["application"]));
            }
            AppCommand::Rename { name, new_name } => {
                let renamed = gantry
                    .api(
                        "UpdateApplication",
                        json!({"applicationName": name, "newApplicationName": new_name}),
                    )
                    .await?;
                show(output, &renamed, |_| {
                    format!("renamed application {name} to {new_name}")
                });
            }
            AppCommand::Delete { name } => {
                let deleted = gantry
                    .api("DeleteApplication", json!({"applicationName": name}))
                    .await?;
                show(output, &deleted, |_| format!("deleted application {name}"));
            }
        },
        Command::Group { command } => match command {
            GroupCommand::Create {
                name,
                app,
                settings,
                tags,
            } => {
                let mut input =
                    settings.input(json!({"applicationName": app, "deploymentGroupName": name}))?;
                if !tags.is_empty() {
                    input["tags"] = tags::tag_list("--tag", &tags)?;
                }
                let created = gantry.api("CreateDeploymentGroup", input).await?;
                show(output, &created, |_| {
                    format!("created deployment group {name}")
                });
            }
            GroupCommand::Update {
                name,
                app,
                settings,
                removals,
            } => {
                let mut input = settings
                    .input(json!({"applicationName": app, "currentDeploymentGroupName": name}))?;
                if !removals.is_empty() {
                    let current = gantry
                        .api(
                            "GetDeploymentGroup",
                            json!({"applicationName": app, "deploymentGroupName": name}),
                        )
                        .await?;
                    input = removals.apply(input, &current["deploymentGroupInfo"])?;
                }
                let input = removals.clear(input)?;
                let updated = gantry.api("UpdateDeploymentGroup", input).await?;
                show(output, &updated, |_| {
                    format!("updated deployment group {name}")
                });
            }
            GroupCommand::Get { name, app } => {
                let got = gantry
                    .api(
                        "GetDeploymentGroup",
                        json!({"applicationName": app, "deploymentGroupName": name}),
                    )
                    .await?;
                show(output, &got, |v| format!("{:#}", v["deploymentGroupInfo"]));
            }
            GroupCommand::List { app } => {
                let listed = gantry
                    .list_all(
                        "ListDeploymentGroups",
                        json!({"applicationName": app}),
                        "deploymentGroups",
                    )
                    .await?;
                show(output, &listed, |v| lines(&v["deploymentGroups"]));
            }
            GroupCommand::Delete { name, app } => {
                let deleted = gantry
                    .api(
                        "DeleteDeploymentGroup",
                        json!({"applicationName": app, "deploymentGroupName": name}),
                    )
                    .await?;
                show(output, &deleted, |_| {
                    format!("deleted deployment group {name}")
                });
            }
        },
        Command::Config { command } => match command {
            ConfigCommand::Create {
                name,
                min_healthy_hosts,
                min_healthy_percent,
                zonal_monitor_seconds,
            } => {
                let minimum = match (min_healthy_hosts, min_healthy_percent) {
                    (Some(hosts), _) => json!({"type": "HOST_COUNT", "value": hosts}),
                    (None, Some(percent)) => json!({"type": "FLEET_PERCENT", "value": percent}),
                    (None, None) => anyhow::bail!(
                        "config create: give --min-healthy-hosts N or --min-healthy-percent P"
                    ),
                };
                let mut input =
                    json!({"deploymentConfigName": name, "minimumHealthyHosts": minimum});
                if let Some(seconds) = zonal_monitor_seconds {
                    input["zonalConfig"] = json!({"monitorDurationInSeconds": seconds});
                }
                let created = gantry.api("CreateDeploymentConfig", input).await?;
                show(output, &created, |_| {
                    format!("created deployment configuration {name}")
                });
            }
            ConfigCommand::List => {
                let listed = gantry
                    .list_all("ListDeploymentConfigs", json!({}), "deploymentConfigsList")
                    .await?;
                show(output, &listed, |v| lines(&v["deploymentConfigsList"]));
            }
            ConfigCommand::Get { name } => {
                let got = gantry
                    .api("GetDeploymentConfig", json!({"deploymentConfigName": name}))
                    .await?;
                show(output, &got, |v| format!("{:#}", v["deploymentConfigInfo"]));
            }
            ConfigCommand::Delete { name } => {
                let deleted = gantry
                    .api(
                        "DeleteDeploymentConfig",
                        json!({"deploymentConfigName": name}),
                    )
                    .await?;
                show(output, &deleted, |_| {
                    format!("deleted deployment configuration {name}")
                });
            }
        },
        Command::Instance { command } => match command {
            InstanceCommand::Register {
                name,
                iam_user_arn,
                iam_session_arn,
                tags,
            } => {
                let mut input = json!({"instanceName": name});
                if let Some(arn) = iam_user_arn {
                    input["iamUserArn"] = json!(arn);
                }
                if let Some(arn) = iam_session_arn {
                    input["iamSessionArn"] = json!(arn);
                }
                let registered = gantry.api("RegisterOnPremisesInstance", input).await?;
                if !tags.is_empty() {
                    add_tags(&gantry, &name, &tags).await?;
                }
                show(output, &registered, |_| {
                    format!("registered instance {name}")
                });
            }
            InstanceCommand::Deregister { name } => {
                let done = gantry
                    .api(
                        "DeregisterOnPremisesInstance",
                        json!({"instanceName": name}),
                    )
                    .await?;
                show(output, &done, |_| format!("deregistered instance {name}"));
            }
            InstanceCommand::Tag { name, tags } => {
                let done = add_tags(&gantry, &name, &tags).await?;
                show(output, &done, |_| format!("tagged instance {name}"));
            }
            InstanceCommand::List => {
                let listed = gantry
                    .list_all("ListOnPremisesInstances", json!({}), "instanceNames")
                    .await?;
                show(output, &listed, |v| lines(&v["instanceNames"]));
            }
        },
        Command::Tags { command } => tags::run(&gantry, command, output).await?,
        Command::Targets {
            deployment_id,
            statuses,
        } => reads::targets(&gantry, &deployment_id, &statuses, output).await?,
        Command::Target {
            deployment_id,
            target_id,
        } => reads::target(&gantry, &deployment_id, &target_id, output).await?,
        Command::Revisions { app } => reads::revisions(&gantry, &app, output).await?,
        Command::Push(args) => return push::run(&gantry, args, output).await,
        Command::Deploy(args) => return deploy::run(&gantry, args, output).await,
        Command::Status { deployment_id } => {
            let info = gantry
                .api("GetDeployment", json!({"deploymentId": deployment_id}))
                .await?;
            let targets = deploy::targets(&gantry, &deployment_id).await?;
            match output {
                Output::Json => show(output, &info, |_| String::new()),
                Output::Text => println!("{}", deploy::summary(&info["deploymentInfo"], &targets)),
            }
            return Ok(deploy::exit_code(&info["deploymentInfo"]));
        }
        Command::List { app, group } => {
            let listed = gantry
                .list_all(
                    "ListDeployments",
                    json!({"applicationName": app, "deploymentGroupName": group}),
                    "deployments",
                )
                .await?;
            show(output, &listed, |v| lines(&v["deployments"]));
        }
        Command::Logs {
            deployment_id,
            instance,
            event,
        } => {
            let targets = deploy::targets(&gantry, &deployment_id).await?;
            match output {
                Output::Json => show(output, &Value::Array(targets), |_| String::new()),
                Output::Text => print!(
                    "{}",
                    deploy::logs(&targets, instance.as_deref(), event.as_deref())
                ),
            }
        }
        Command::Stop {
            deployment_id,
            rollback,
        } => {
            let stopped = gantry
                .api(
                    "StopDeployment",
                    json!({"deploymentId": deployment_id, "autoRollbackEnabled": rollback}),
                )
                .await?;
            show(output, &stopped, |v| {
                v["statusMessage"].as_str().unwrap_or("stopped").to_owned()
            });
        }
        Command::Continue {
            deployment_id,
            terminate,
        } => {
            let wait = if terminate {
                "TERMINATION_WAIT"
            } else {
                "READY_WAIT"
            };
            let continued = gantry
                .api(
                    "ContinueDeployment",
                    json!({"deploymentId": deployment_id, "deploymentWaitType": wait}),
                )
                .await?;
            show(output, &continued, |_| {
                if terminate {
                    format!("{deployment_id}: terminating the original fleet")
                } else {
                    format!("{deployment_id}: rerouting traffic to the replacement fleet")
                }
            });
        }
        Command::Rollback { app, group } => {
            let started = gantry
                .invoke(
                    "rollback",
                    &json!({"applicationName": app, "deploymentGroupName": group}),
                )
                .await?;
            show(output, &started, |v| {
                format!(
                    "rolling back {}: deployment {}",
                    v["rollbackTriggeringDeploymentId"].as_str().unwrap_or("?"),
                    v["deploymentId"].as_str().unwrap_or("?")
                )
            });
        }
    }
    Ok(ok)
}

async fn add_tags(gantry: &Gantry, name: &str, tags: &[String]) -> anyhow::Result<Value> {
    let tags = tags
        .iter()
        .map(|pair| {
            key_value("--tag", pair).map(|(key, value)| json!({"Key": key, "Value": value}))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    Ok(gantry
        .api(
            "AddTagsToOnPremisesInstances",
            json!({"instanceNames": [name], "tags": tags}),
        )
        .await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filter(key: &str, value: &str) -> Value {
        json!({"Key": key, "Value": value, "Type": "KEY_AND_VALUE"})
    }

    #[test]
    fn the_command_line_is_well_formed() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    #[test]
    fn group_update_removes_one_tag_and_keeps_what_it_does_not_name() {
        let current = json!({
            "onPremisesInstanceTagFilters": [filter("role", "web"), filter("role", "api")],
            "ec2TagFilters": [filter("env", "prod")],
            "autoScalingGroups": [{"name": "web-asg"}, {"name": "api-asg"}],
        });
        let removals = GroupRemovals {
            on_prem_tags: vec!["role=api".into()],
            ec2_tags: vec!["env=prod".into()],
            auto_scaling_groups: vec!["api-asg".into()],
            ..Default::default()
        };
        let input = removals
            .apply(json!({"currentDeploymentGroupName": "web"}), &current)
            .unwrap();
        assert_eq!(
            input,
            json!({
                "currentDeploymentGroupName": "web",
                "onPremisesInstanceTagFilters": [filter("role", "web")],
                "ec2TagFilters": [],
                "autoScalingGroups": ["web-asg"],
            })
        );
        let nothing = GroupRemovals::default()
            .apply(json!({"currentDeploymentGroupName": "web"}), &current)
            .unwrap();
        assert_eq!(nothing, json!({"currentDeploymentGroupName": "web"}));
        let missing = GroupRemovals {
            on_prem_tags: vec!["role=db".into()],
            ..Default::default()
        }
        .apply(json!({}), &current)
        .unwrap_err();
        assert!(
            missing.to_string().contains("--remove-on-prem-tag"),
            "{missing}"
        );
    }

    #[test]
    fn group_update_clear_sends_an_empty_list_and_refuses_one_given_too() {
        let removals = GroupRemovals {
            cleared: vec![TargetList::OnPremTags, TargetList::Ec2TagSets],
            ..Default::default()
        };
        let input = removals
            .clear(json!({"currentDeploymentGroupName": "web", "onPremisesTagSet": {"onPremisesTagSetList": [[filter("role", "web")]]}}))
            .unwrap();
        assert_eq!(
            input,
            json!({
                "currentDeploymentGroupName": "web",
                "onPremisesTagSet": {"onPremisesTagSetList": [[filter("role", "web")]]},
                "onPremisesInstanceTagFilters": [],
                "ec2TagSet": {"ec2TagSetList": []},
            })
        );
        let both = removals
            .clear(json!({"onPremisesInstanceTagFilters": [filter("role", "web")]}))
            .unwrap_err();
        assert!(
            both.to_string().contains("--clear on-prem-tags")
                && both.to_string().contains("--on-prem-tag"),
            "{both}"
        );
    }
}
