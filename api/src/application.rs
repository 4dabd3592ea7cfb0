//! Applications as GetApplication and ListApplications return them.

use crate::model::ApplicationInfo;
use crate::paging::page_of;
use serde::{Deserialize, Serialize};

/// GetApplication's output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GetApplicationOutput {
    pub application: ApplicationInfo,
}

/// ListApplications' output: application names, a page at a time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListApplicationsOutput {
    pub applications: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_token: Option<String>,
}

page_of!(ListApplicationsOutput, applications: String);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::reads_and_writes_back;
    use serde_json::json;

    #[test]
    fn codedeploys_get_application_reads_and_writes_back_unchanged() {
        let got: GetApplicationOutput = reads_and_writes_back(json!({
            "application": {
                "applicationId": "2a5e8b7c-1f3d-4c9e-8a6b-0d4f2e7c9b1a",
                "applicationName": "WordPress_App", "createTime": 1764979200.123,
                "linkedToGitHub": false, "computePlatform": "Server"
            }
        }));
        assert_eq!(got.application.application_name, "WordPress_App");
    }

    #[test]
    fn codedeploys_list_applications_reads_and_writes_back_unchanged() {
        let listed: ListApplicationsOutput = reads_and_writes_back(json!({
            "applications": ["WordPress_App", "MyOther_App"], "nextToken": "eyJhIjoiMSJ9"
        }));
        assert_eq!(listed.next_token.as_deref(), Some("eyJhIjoiMSJ9"));
        let last: ListApplicationsOutput =
            reads_and_writes_back(json!({"applications": ["WordPress_App"]}));
        assert_eq!(last.next_token, None);
    }
}
