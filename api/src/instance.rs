//! On-premises instances as ListOnPremisesInstances returns them.

use crate::paging::page_of;
use serde::{Deserialize, Serialize};

/// ListOnPremisesInstances' output: instance names, a page at a time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListOnPremisesInstancesOutput {
    pub instance_names: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_token: Option<String>,
}

page_of!(ListOnPremisesInstancesOutput, instance_names: String);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::reads_and_writes_back;
    use serde_json::json;

    #[test]
    fn codedeploys_list_on_premises_instances_reads_and_writes_back_unchanged() {
        let listed: ListOnPremisesInstancesOutput = reads_and_writes_back(json!({
            "instanceNames": ["AssetTag12010298EX", "AssetTag23121309EX"],
            "nextToken": "QXNzZXRUYWcyMzEyMTMwOUVY"
        }));
        assert_eq!(listed.instance_names[1], "AssetTag23121309EX");
    }
}
