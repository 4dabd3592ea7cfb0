//! `gantry tags`: resource tags of applications, deployment groups and deployment
//! configurations (TagResource, UntagResource, ListTagsForResource), by CodeDeploy ARN.

use crate::client::Gantry;
use crate::key_value;
use crate::output::{Output, show};
use clap::Subcommand;
use gantry_api::model::Tag;
use gantry_api::tags::ListTagsForResourceOutput;
use serde_json::json;

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

/// Tags (`[{"Key", "Value"}]`) from KEY=VALUE pairs.
pub fn tag_list(flag: &str, pairs: &[String]) -> anyhow::Result<Vec<Tag>> {
    pairs
        .iter()
        .map(|pair| key_value(flag, pair).map(|(key, value)| Tag { key, value }))
        .collect()
}

/// KEY=VALUE, one a line.
fn text(tags: &[Tag]) -> String {
    tags.iter()
        .map(|tag| format!("{}={}", tag.key, tag.value))
        .collect::<Vec<_>>()
        .join("\n")
}

pub async fn run(gantry: &Gantry, command: TagsCommand, output: Output) -> anyhow::Result<()> {
    match command {
        TagsCommand::List { arn } => {
            let listed: ListTagsForResourceOutput = gantry
                .list_all("ListTagsForResource", json!({"ResourceArn": arn}))
                .await?;
            show(output, &listed, |v| text(&v.tags));
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
            json!(tags),
            json!([{"Key": "team", "Value": "shop"}, {"Key": "empty", "Value": ""}])
        );
        assert_eq!(text(&tags), "team=shop\nempty=");
        let error = tag_list("--tag", &["=x".into()]).unwrap_err();
        assert!(error.to_string().contains("--tag"), "{error}");
    }
}
