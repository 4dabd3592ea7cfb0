"""boto3's CodeDeploy paginators against Gantry: every list operation that pages, over more
items than one page holds (Gantry's page is 100), comes back whole, in two pages or more
linked by nextToken, each item once. (ListGitHubAccountTokenNames answers
OperationNotSupportedException, README; ListTagsForResource holds at most 50 tags.)

Usage: python tests/conformance/paging.py ENDPOINT COUNT   (COUNT > 100; prints one line
per operation; exits 1 on a mismatch)
"""

import io
import json
import sys
import zipfile

import boto3
import botocore

APPSPEC = "version: 0.0\nos: linux\nfiles:\n  - source: index.html\n    destination: /tmp/shop\n"
TAG = {"Key": "role", "Value": "paged", "Type": "KEY_AND_VALUE"}


def made(client, count):
    """Creates COUNT of everything a list operation lists; what each should list."""
    want = {}
    names = [f"app-{index:04}" for index in range(count)]
    for name in names:
        client.create_application(applicationName=name)
    want[("ListApplications", "applications", ())] = names

    configs = [f"config-{index:04}" for index in range(count)]
    for name in configs:
        client.create_deployment_config(
            deploymentConfigName=name, minimumHealthyHosts={"type": "HOST_COUNT", "value": 1}
        )
    predefined = [
        name
        for name in client.list_deployment_configs()["deploymentConfigsList"]
        if name.startswith("CodeDeployDefault.")
    ]
    want[("ListDeploymentConfigs", "deploymentConfigsList", ())] = configs + predefined

    # The groups of app-0000, each with no instance but `hosts`, and a deployment to each
    # (a group with no instance: the deployment ends at once).
    groups = [f"group-{index:04}" for index in range(count)]
    for name in groups:
        client.create_deployment_group(
            applicationName="app-0000",
            deploymentGroupName=name,
            serviceRoleArn="arn:aws:iam::123456789012:role/CodeDeploy",
            onPremisesInstanceTagFilters=[{"Key": "group", "Value": name, "Type": "KEY_AND_VALUE"}],
        )
    client.create_deployment_group(
        applicationName="app-0000",
        deploymentGroupName="hosts",
        serviceRoleArn="arn:aws:iam::123456789012:role/CodeDeploy",
        onPremisesInstanceTagFilters=[TAG],
    )
    want[("ListDeploymentGroups", "deploymentGroups", (("applicationName", "app-0000"),))] = (
        groups + ["hosts"]
    )

    # Revisions of app-0000: one bundle under as many keys.
    s3 = boto3.client("s3", region_name="us-east-1")
    bundle = io.BytesIO()
    with zipfile.ZipFile(bundle, "w") as archive:
        archive.writestr("appspec.yml", APPSPEC)
        archive.writestr("index.html", "hello\n")
    revisions = []
    for index in range(count):
        key = f"paged/{index:04}.zip"
        s3.put_object(Bucket="gantry-revisions", Key=key, Body=bundle.getvalue())
        revision = {
            "revisionType": "S3",
            "s3Location": {"bucket": "gantry-revisions", "key": key, "bundleType": "zip"},
        }
        client.register_application_revision(applicationName="app-0000", revision=revision)
        revisions.append(revision)
    want[("ListApplicationRevisions", "revisions", (("applicationName", "app-0000"),))] = [
        json.dumps(revision["s3Location"]["key"]) for revision in revisions
    ]

    # On-premises instances tagged for `hosts`, and one deployment to them all (no agent
    # runs, so it waits in progress) besides the one to each empty group.
    account = boto3.client("sts", region_name="us-east-1").get_caller_identity()["Account"]
    boto3.client("iam", region_name="us-east-1").create_role(
        RoleName="paged",
        AssumeRolePolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": []}),
    )
    instances = [f"host-{index:04}" for index in range(count)]
    for name in instances:
        client.register_on_premises_instance(
            instanceName=name, iamSessionArn=f"arn:aws:sts::{account}:assumed-role/paged/{name}"
        )
    for start in range(0, count, 10):
        client.add_tags_to_on_premises_instances(
            instanceNames=instances[start:start + 10],
            tags=[{"Key": TAG["Key"], "Value": TAG["Value"]}],
        )
    want[("ListOnPremisesInstances", "instanceNames", ())] = instances
    deployments = [
        client.create_deployment(
            applicationName="app-0000", deploymentGroupName=name, revision=revisions[0]
        )["deploymentId"]
        for name in groups + ["hosts"]
    ]
    fleet = deployments[-1]
    want[("ListDeployments", "deployments", (("applicationName", "app-0000"),))] = deployments
    want[("ListDeploymentInstances", "instancesList", (("deploymentId", fleet),))] = instances
    want[("ListDeploymentTargets", "targetIds", (("deploymentId", fleet),))] = instances
    return want


def planned(client, deployment, count):
    """Waits (60 s at most) until the deployment has planned `count` instances."""
    import time

    deadline = time.monotonic() + 60
    while True:
        listed = [
            name
            for page in client.get_paginator("list_deployment_instances").paginate(
                deploymentId=deployment
            )
            for name in page["instancesList"]
        ]
        if len(listed) >= count or time.monotonic() > deadline:
            return
        time.sleep(0.5)


def main():
    endpoint, count = sys.argv[1], int(sys.argv[2])
    client = boto3.client("codedeploy", endpoint_url=endpoint, region_name="us-east-1")
    want = made(client, count)
    for (operation, _, given) in want:
        if operation == "ListDeploymentInstances":
            planned(client, dict(given)["deploymentId"], count)
    failed = False
    for (operation, key, given), expected in want.items():
        paginator = client.get_paginator(botocore.xform_name(operation))
        pages = list(paginator.paginate(**dict(given)))
        listed = [item for page in pages for item in page[key]]
        if key == "revisions":
            listed = [json.dumps(item["s3Location"]["key"]) for item in listed]
        ok = sorted(listed) == sorted(expected) and len(pages) >= 2
        failed |= not ok
        print(
            f"{operation}: {len(pages)} pages, {len(listed)} items, "
            f"{len(set(listed))} distinct, {len(expected)} expected{'' if ok else ' MISMATCH'}"
        )
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
