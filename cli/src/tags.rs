//! `gantry tags`: resource tags of applications, deployment groups and deployment
//! configurations (TagResource, UntagResource, ListTagsForResource), by CodeDeploy ARN.

use crate::client::Gantry;
use crate::key_value;
use crate::output::{Output, show};
use clap::Subcommand;
use serde_json::{Value, json};

#[derive(Subcommand)]
pub enum TagsCommand {
    /// A resource's tags, KEY=VALUE one a line.
    List {
        /// arn:aws:codedeploy:REGION:ACCOUNT:application:NAME,
        /// ...:deploymentgroup:APPLICATION/GROUP or ...:deploymentconfig:NAME.
        arn: String,
    },
    /// Add tags to a resource; a key it has already gets the new value.
    Add {
        arn: String,
        /// KEY=VALUE (VALUE may be empty).
        #[arg(required = true)]
        tags: Vec<String>,
    },
    /// Remove tags from a resource, by key.
    Remove {
        arn: String,
        #[arg(required = true)]
        keys: Vec<String>,
    },
}

/// `[{"Key", "Value"}]` from KEY=VALUE pairs.
pub fn tag_list(flag: &str, pairs: &[String]) -> anyhow::Result<Value> {
    pairs
        .iter()
        .map(|pair| key_value(flag, pair).map(|(key, value)| json!({"Key": key, "Value": value})))
        .collect::<anyhow::Result<Vec<_>>>()
        .map(Value::Array)
}

/// KEY=VALUE, one a line.
fn text(tags: &Value) -> String {
    tags.as_array()
        .into_iter()
        .flatten()
        .map(|tag| {
            format!(
                "{}={}",
                tag["Key"].as_str().unwrap_or_default(),
                tag["Value"].as_str().unwrap_or_default()
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

pub async fn run(gantry: &Gantry, command: TagsCommand, output: Output) -> anyhow::Result<()> {
    match command {
        TagsCommand::List { arn } => {
            let mut input = json!({"ResourceArn": arn});
            let mut listed = gantry.api("ListTagsForResource", input.clone()).await?;
            let mut tags = listed["Tags"].as_array().cloned().unwrap_or_default();
            while let Some(token) = listed["NextToken"].as_str().map(str::to_owned) {
                input["NextToken"] = json!(token);
                listed = gantry.api("ListTagsForResource", input.clone()).await?;
                tags.extend(listed["Tags"].as_array().cloned().unwrap_or_default());
            }
            show(output, &json!({"Tags": tags}), |v| text(&v["Tags"]));
        }
        TagsCommand::Add { arn, tags } => {
            let tags = tag_list("TAGS", &tags)?;
            let done = gantry
                .api("TagResource", json!({"ResourceArn": arn, "Tags": tags}))
                .await?;
            show(output, &done, |_| format!("tagged {arn}"));
        }
        TagsCommand::Remove { arn, keys } => {
            let done = gantry
                .api(
                    "UntagResource",
                    json!({"ResourceArn": arn, "TagKeys": keys}),
                )
                .await?;
            show(output, &done, |_| format!("untagged {arn}"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_are_given_as_key_value_and_shown_so() {
        let tags = tag_list("--tag", &["team=shop".into(), "empty=".into()]).unwrap();
        assert_eq!(
            tags,
            json!([{"Key": "team", "Value": "shop"}, {"Key": "empty", "Value": ""}])
        );
        assert_eq!(text(&tags), "team=shop\nempty=");
        let error = tag_list("--tag", &["=x".into()]).unwrap_err();
        assert!(error.to_string().contains("--tag"), "{error}");
    }
}
