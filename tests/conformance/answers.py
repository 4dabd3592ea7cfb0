"""The answers about deployments that ran on hosts, against CodeDeploy's model: the group,
each deployment, its instances and targets, and the application's revisions must have
the model's shape (as check.py checks them), and the members only a finished run can show
must be there: the group's target revision and last success, a deployment's previous
revision and rollback, a failed event's diagnostics, a revision's deployment groups.

Usage: python tests/conformance/answers.py ENDPOINT APPLICATION GROUP DEPLOYMENT...
(prints findings, one per line, as JSON; exits 1 if there are any). The quick-start test
(tests/tests/codedeploy_cli.rs) runs it after its deployments.
"""

import json
import sys

from check import Answers

AFTER_A_RUN = [
    "DeploymentGroupInfo.targetRevision",
    "DeploymentGroupInfo.lastSuccessfulDeployment",
    "DeploymentInfo.previousRevision",
    "DeploymentInfo.rollbackInfo",
    "RollbackInfo.rollbackDeploymentId",
    "RollbackInfo.rollbackTriggeringDeploymentId",
    "LifecycleEvent.diagnostics",
    "Diagnostics.logTail",
    "GenericRevisionInfo.deploymentGroups",
]


def main():
    endpoint, application, group, *deployments = sys.argv[1:]
    answers = Answers(endpoint)
    answers.read("GetDeploymentGroup", applicationName=application, deploymentGroupName=group)
    answers.read("BatchGetDeployments", deploymentIds=deployments)
    for deployment in deployments:
        answers.read("GetDeployment", deploymentId=deployment)
        instances = answers.read("ListDeploymentInstances", deploymentId=deployment)["instancesList"]
        answers.read("BatchGetDeploymentInstances", deploymentId=deployment, instanceIds=instances)
        for instance in instances:
            answers.read("GetDeploymentInstance", deploymentId=deployment, instanceId=instance)
        targets = answers.read("ListDeploymentTargets", deploymentId=deployment)["targetIds"]
        answers.read("BatchGetDeploymentTargets", deploymentId=deployment, targetIds=targets)
    revisions = answers.read("ListApplicationRevisions", applicationName=application)["revisions"]
    answers.read("BatchGetApplicationRevisions", applicationName=application, revisions=revisions)
    for revision in revisions:
        answers.read("GetApplicationRevision", applicationName=application, revision=revision)
    found = answers.found + [
        {"finding": "not answered", "member": member}
        for member in AFTER_A_RUN
        if answers.never_seen(member)
    ]
    for finding in found:
        print(json.dumps(finding))
    sys.exit(1 if found else 0)


if __name__ == "__main__":
    main()
