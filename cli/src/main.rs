//! `gantry`: the command line for Gantry deployments.
//!
//! Every command but `appspec lint` talks to Gantry's functions through the Lambda
//! Invoke API: a deployed stack (`--stack`) or gantry-local (`--endpoint-url`).
//!
//! Here: `main`, and each command's dispatch to the operation it calls. [`args`] defines
//! the command line, [`group_args`] a group's flags and [`output`] prints the results.

mod args;
mod client;
mod console;
mod deploy;
mod group_args;
mod lint;
mod output;
mod proxy;
mod push;
mod reads;
mod serve;
mod tags;

use args::{
    AppCommand, AppspecCommand, Cli, Command, ConfigCommand, GroupCommand, InstanceCommand,
};
use clap::Parser;
use client::Gantry;
use gantry_api::application::{GetApplicationOutput, ListApplicationsOutput};
use gantry_api::config::{GetDeploymentConfigOutput, ListDeploymentConfigsOutput};
use gantry_api::deployment::{ListDeploymentsOutput, RollbackOutput, StopDeploymentOutput};
use gantry_api::group::{GetDeploymentGroupOutput, ListDeploymentGroupsOutput};
use gantry_api::instance::ListOnPremisesInstancesOutput;
use output::{Output, pretty, show};
use serde_json::{Value, json};
use std::process::ExitCode;

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
            AppCommand::Create {
                name,
                tags,
                compute_platform,
            } => {
                let mut input = json!({"applicationName": name});
                if let Some(platform) = compute_platform {
                    input["computePlatform"] = json!(platform);
                }
                if !tags.is_empty() {
                    input["tags"] = json!(tags::tag_list("--tag", &tags)?);
                }
                let created = gantry.api("CreateApplication", input).await?;
                show(output, &created, |_| format!("created application {name}"));
            }
            AppCommand::List => {
                let listed: ListApplicationsOutput =
                    gantry.list_all("ListApplications", json!({})).await?;
                show(output, &listed, |v| v.applications.join("\n"));
            }
            AppCommand::Get { name } => {
                let (got, typed): (_, GetApplicationOutput) = gantry
                    .call("GetApplication", json!({"applicationName": name}))
                    .await?;
                show(output, &got, |_| pretty(&typed.application));
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
                    input["tags"] = json!(tags::tag_list("--tag", &tags)?);
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
                    let (_, current): (_, GetDeploymentGroupOutput) = gantry
                        .call(
                            "GetDeploymentGroup",
                            json!({"applicationName": app, "deploymentGroupName": name}),
                        )
                        .await?;
                    input = removals.apply(input, &current.deployment_group_info)?;
                }
                let input = removals.clear(input)?;
                let updated = gantry.api("UpdateDeploymentGroup", input).await?;
                show(output, &updated, |_| {
                    format!("updated deployment group {name}")
                });
            }
            GroupCommand::Get { name, app } => {
                let (got, typed): (_, GetDeploymentGroupOutput) = gantry
                    .call(
                        "GetDeploymentGroup",
                        json!({"applicationName": app, "deploymentGroupName": name}),
                    )
                    .await?;
                show(output, &got, |_| pretty(&typed.deployment_group_info));
            }
            GroupCommand::List { app } => {
                let listed: ListDeploymentGroupsOutput = gantry
                    .list_all("ListDeploymentGroups", json!({"applicationName": app}))
                    .await?;
                show(output, &listed, |v| v.deployment_groups.join("\n"));
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
                traffic_routing,
            } => {
                let minimum = match (min_healthy_hosts, min_healthy_percent) {
                    (Some(hosts), _) => Some(json!({"type": "HOST_COUNT", "value": hosts})),
                    (None, Some(percent)) => {
                        Some(json!({"type": "FLEET_PERCENT", "value": percent}))
                    }
                    (None, None) => None,
                };
                let input = match (minimum, traffic_routing) {
                    (Some(minimum), _) => {
                        let mut input =
                            json!({"deploymentConfigName": name, "minimumHealthyHosts": minimum});
                        if let Some(seconds) = zonal_monitor_seconds {
                            input["zonalConfig"] = json!({"monitorDurationInSeconds": seconds});
                        }
                        input
                    }
                    (None, Some(routing)) => json!({
                        "deploymentConfigName": name,
                        "computePlatform": "Lambda",
                        "trafficRoutingConfig": routing,
                    }),
                    (None, None) => anyhow::bail!(
                        "config create: give --min-healthy-hosts N or --min-healthy-percent P (Server), or --traffic-routing (Lambda)"
                    ),
                };
                let created = gantry.api("CreateDeploymentConfig", input).await?;
                show(output, &created, |_| {
                    format!("created deployment configuration {name}")
                });
            }
            ConfigCommand::List => {
                let listed: ListDeploymentConfigsOutput =
                    gantry.list_all("ListDeploymentConfigs", json!({})).await?;
                show(output, &listed, |v| v.deployment_configs_list.join("\n"));
            }
            ConfigCommand::Get { name } => {
                let (got, typed): (_, GetDeploymentConfigOutput) = gantry
                    .call("GetDeploymentConfig", json!({"deploymentConfigName": name}))
                    .await?;
                show(output, &got, |_| pretty(&typed.deployment_config_info));
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
                let listed: ListOnPremisesInstancesOutput = gantry
                    .list_all("ListOnPremisesInstances", json!({}))
                    .await?;
                show(output, &listed, |v| v.instance_names.join("\n"));
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
            let info = match deploy::lambda::deployment(&gantry, &deployment_id).await? {
                deploy::lambda::Deployment::Server(info) => *info,
                deploy::lambda::Deployment::Lambda(info) => {
                    let alias = deploy::lambda::alias_of(&gantry, &deployment_id).await?;
                    match output {
                        Output::Json => {
                            show(output, &json!({"deploymentInfo": info}), |_| String::new())
                        }
                        Output::Text => println!(
                            "{}",
                            deploy::lambda::summary(&info, alias.as_ref(), deploy::unix_seconds())
                        ),
                    }
                    return Ok(deploy::lambda::exit_code(info.status));
                }
            };
            let targets = deploy::targets(&gantry, &deployment_id).await?;
            match output {
                Output::Json => show(output, &json!({"deploymentInfo": info}), |_| String::new()),
                Output::Text => println!("{}", deploy::summary(&info, &targets)),
            }
            return Ok(deploy::exit_code(&info));
        }
        Command::List { app, group } => {
            let listed: ListDeploymentsOutput = gantry
                .list_all(
                    "ListDeployments",
                    json!({"applicationName": app, "deploymentGroupName": group}),
                )
                .await?;
            show(output, &listed, |v| v.deployments.join("\n"));
        }
        Command::Logs {
            deployment_id,
            instance,
            event,
        } => {
            let targets = deploy::targets(&gantry, &deployment_id).await?;
            match output {
                Output::Json => show(output, &json!(targets), |_| String::new()),
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
            let (stopped, typed): (_, StopDeploymentOutput) = gantry
                .call(
                    "StopDeployment",
                    json!({"deploymentId": deployment_id, "autoRollbackEnabled": rollback}),
                )
                .await?;
            show(output, &stopped, |_| typed.status_message);
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
        Command::Proxy { port } => {
            proxy::run(gantry, port).await?;
        }
        Command::Console { port } => {
            console::run(gantry, port).await?;
        }
        Command::Rollback { app, group } => {
            let (started, typed): (_, RollbackOutput) = gantry
                .invoke_typed(
                    "rollback",
                    &json!({"applicationName": app, "deploymentGroupName": group}),
                )
                .await?;
            show(output, &started, |_| {
                format!(
                    "rolling back {}: deployment {}",
                    typed.rollback_triggering_deployment_id, typed.deployment_id
                )
            });
        }
    }
    Ok(ok)
}

async fn add_tags(gantry: &Gantry, name: &str, tags: &[String]) -> anyhow::Result<Value> {
    let tags = tags::tag_list("--tag", tags)?;
    Ok(gantry
        .api(
            "AddTagsToOnPremisesInstances",
            json!({"instanceNames": [name], "tags": tags}),
        )
        .await?)
}

/// A KEY=VALUE flag's key and value, the key not empty (`--tag`, `--trigger`, the tag
/// filters).
fn key_value(flag: &str, pair: &str) -> anyhow::Result<(String, String)> {
    pair.split_once('=')
        .map(|(key, value)| (key.to_owned(), value.to_owned()))
        .filter(|(key, _)| !key.is_empty())
        .ok_or_else(|| anyhow::anyhow!("{flag}: expected KEY=VALUE, found {pair:?}"))
}
