//! Resource tags as ListTagsForResource returns them: the tag operations name their
//! fields in PascalCase (`Tags`, `NextToken`), unlike the rest of CodeDeploy's API.

use crate::model::Tag;
use crate::paging::page_of;
use serde::{Deserialize, Serialize};

/// ListTagsForResource's output: a resource's tags, a page at a time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ListTagsForResourceOutput {
    pub tags: Vec<Tag>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_token: Option<String>,
}

page_of!(ListTagsForResourceOutput, tags: Tag, token "NextToken");

#[cfg(test)]
mod tests {
    use super::*;
    use crate::paging::Page;
    use crate::testing::reads_and_writes_back;
    use serde_json::json;

    #[test]
    fn codedeploys_list_tags_for_resource_reads_and_writes_back_unchanged() {
        let mut listed: ListTagsForResourceOutput = reads_and_writes_back(json!({
            "Tags": [{"Key": "Name", "Value": "Prod"}, {"Key": "team", "Value": ""}],
            "NextToken": "7465616d"
        }));
        assert_eq!(listed.tags[0].key, "Name");
        assert_eq!(ListTagsForResourceOutput::TOKEN_FIELD, "NextToken");
        assert_eq!(listed.take_next_token().as_deref(), Some("7465616d"));
    }
}
