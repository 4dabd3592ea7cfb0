"""Gantry against CodeDeploy's service model (botocore's, in .venv): every operation, called
through boto3 over CodeDeploy's own protocol with every documented input member given,
must be served, must not refuse a documented member as unknown, and may fail only with an
exception the model documents for that operation (or one of AWS's common errors). Then the
answers of the read operations, over applications, configurations, groups, instances, a
Lambda deployment and an in-place one (running, then stopped) made first, must have the
model's shape: every member of its type, every required member there, and no member the
model does not know but Gantry's documented additions. And every optional member must be
in some answer, unless NEVER_ANSWERED says why not.

Usage: python tests/conformance/check.py ENDPOINT   (prints findings, one per line, as
JSON; exits 1 if there are any). The Rust test local/tests/conformance.rs runs it against
gantry-local.
"""

import json
import sys

import boto3
import botocore.session
from botocore.config import Config
from botocore.exceptions import ClientError
from botocore.validate import ParamValidator

# Errors any AWS API may answer (AWS's "common errors").
COMMON_ERRORS = {
    "AccessDeniedException", "IncompleteSignature", "InternalFailure", "InvalidAction",
    "InvalidClientTokenId", "NotAuthorized", "OptInRequired", "RequestExpired",
    "ServiceUnavailable", "ThrottlingException", "ValidationError",
    "UnrecognizedClientException", "InvalidSignatureException",
}


def sample(shape, depth=0):
    """A value of `shape` that boto3 accepts: every member of a structure given."""
    kind = shape.type_name
    if kind == "structure":
        if depth > 4:
            return {}
        return {name: sample(member, depth + 1) for name, member in shape.members.items()}
    if kind == "list":
        return [sample(shape.member, depth + 1)]
    if kind == "map":
        return {"k": sample(shape.value, depth + 1)}
    if kind == "string":
        if shape.enum:
            return shape.enum[0]
        low = shape.metadata.get("min", 1)
        return "x" * max(low, 1)
    if kind in ("integer", "long"):
        return max(shape.metadata.get("min", 1), 1)
    if kind == "boolean":
        return False
    if kind in ("double", "float"):
        return 1.0
    if kind == "timestamp":
        return 0
    if kind == "blob":
        return b"x"
    raise ValueError(f"no sample for {kind}")


def findings(endpoint):
    session = botocore.session.get_session()
    model = session.get_service_model("codedeploy")
    client = boto3.client(
        "codedeploy",
        endpoint_url=endpoint,
        region_name="us-east-1",
        config=Config(retries={"max_attempts": 1}),
    )
    found = []
    for name in model.operation_names:
        operation = model.operation_model(name)
        documented = {error.name for error in operation.error_shapes} | COMMON_ERRORS
        given = sample(operation.input_shape) if operation.input_shape else {}
        method = getattr(client, botocore.xform_name(name))
        try:
            method(**given)
            continue
        except ClientError as error:
            code = error.response["Error"]["Code"]
            message = error.response["Error"].get("Message", "")
        if "unknown field" in message or "not an operation Gantry serves" in message:
            found.append({"operation": name, "finding": "refused", "code": code, "message": message})
        elif code not in documented:
            found.append({"operation": name, "finding": "undocumented exception", "code": code, "message": message})
    return found


# Members Gantry adds to CodeDeploy's answers (README: "gantry deploy" and the Lambda
# platform); CodeDeploy's clients ignore members they do not know.
GANTRY_ADDITIONS = {"blueGreenProgress", "failedEffects", "forgedReports", "nextStepTime", "nextStepWeight"}

# Read operations and their input, over what `output_findings` creates first.
READS = [
    ("ListApplications", {}),
    ("GetApplication", {"applicationName": "shop"}),
    ("BatchGetApplications", {"applicationNames": ["shop"]}),
    ("ListDeploymentConfigs", {}),
    ("GetDeploymentConfig", {"deploymentConfigName": "CodeDeployDefault.OneAtATime"}),
    ("GetDeploymentConfig", {"deploymentConfigName": "TwoHealthy"}),
    ("GetDeploymentConfig", {"deploymentConfigName": "CodeDeployDefault.LambdaLinear10PercentEvery1Minute"}),
    ("GetDeploymentConfig", {"deploymentConfigName": "CodeDeployDefault.LambdaCanary10Percent5Minutes"}),
    ("GetDeploymentConfig", {"deploymentConfigName": "Zonal"}),
    ("BatchGetDeploymentGroups", {"applicationName": "shop", "deploymentGroupNames": ["sets", "fleet"]}),
    ("GetOnPremisesInstance", {"instanceName": "shop-2"}),
    ("ListDeploymentGroups", {"applicationName": "shop"}),
    ("GetDeploymentGroup", {"applicationName": "shop", "deploymentGroupName": "web"}),
    ("BatchGetDeploymentGroups", {"applicationName": "shop", "deploymentGroupNames": ["web"]}),
    ("ListDeployments", {"applicationName": "shop", "deploymentGroupName": "web"}),
    ("ListApplicationRevisions", {"applicationName": "shop"}),
    ("ListOnPremisesInstances", {}),
    ("ListTagsForResource", {"ResourceArn": None}),
]

# Read operations of a Lambda deployment ("DEPLOYMENT": its id), made by `lambda_deployment`.
DEPLOYMENT_READS = [
    ("GetDeployment", {"deploymentId": "DEPLOYMENT"}),
    ("BatchGetDeployments", {"deploymentIds": ["DEPLOYMENT"]}),
    ("ListDeploymentTargets", {"deploymentId": "DEPLOYMENT"}),
    ("GetDeploymentTarget", {"deploymentId": "DEPLOYMENT", "targetId": "orders:live"}),
    ("BatchGetDeploymentTargets", {"deploymentId": "DEPLOYMENT", "targetIds": ["orders:live"]}),
    ("GetDeploymentGroup", {"applicationName": "orders", "deploymentGroupName": "live"}),
]

# Read operations of an in-place deployment to on-premises instance `shop-1`
# ("INSTANCE_DEPLOYMENT": its id), made by `instance_deployment`; read while it runs and
# again once stopped.
INSTANCE_READS = [
    ("GetDeployment", {"deploymentId": "INSTANCE_DEPLOYMENT"}),
    ("BatchGetDeployments", {"deploymentIds": ["INSTANCE_DEPLOYMENT"]}),
    ("ListDeployments", {"applicationName": "shop", "deploymentGroupName": "hosts"}),
    ("ListDeploymentInstances", {"deploymentId": "INSTANCE_DEPLOYMENT"}),
    ("GetDeploymentInstance", {"deploymentId": "INSTANCE_DEPLOYMENT", "instanceId": "shop-1"}),
    ("BatchGetDeploymentInstances", {"deploymentId": "INSTANCE_DEPLOYMENT", "instanceIds": ["shop-1"]}),
    ("ListDeploymentTargets", {"deploymentId": "INSTANCE_DEPLOYMENT"}),
    ("GetDeploymentTarget", {"deploymentId": "INSTANCE_DEPLOYMENT", "targetId": "shop-1"}),
    ("BatchGetDeploymentTargets", {"deploymentId": "INSTANCE_DEPLOYMENT", "targetIds": ["shop-1"]}),
    ("GetDeploymentGroup", {"applicationName": "shop", "deploymentGroupName": "hosts"}),
    ("GetApplicationRevision", {"applicationName": "shop", "revision": "REVISION"}),
    ("BatchGetApplicationRevisions", {"applicationName": "shop", "revisions": ["REVISION"]}),
    ("ListApplicationRevisions", {"applicationName": "shop"}),
    ("GetOnPremisesInstance", {"instanceName": "shop-1"}),
    ("BatchGetOnPremisesInstances", {"instanceNames": ["shop-1"]}),
]


def lambda_deployment(client):
    """Function `orders` (two versions, alias `live` on the first, on the stand-in's
    Lambda) deployed all at once by a Lambda application's group; its deployment id."""
    import io
    import zipfile

    lam = boto3.client("lambda", region_name="us-east-1")
    iam = boto3.client("iam", region_name="us-east-1")
    role = iam.create_role(
        RoleName="orders",
        AssumeRolePolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": []}),
    )["Role"]["Arn"]
    package = io.BytesIO()
    with zipfile.ZipFile(package, "w") as archive:
        archive.writestr("handler.py", "print('{}')\n")
    lam.create_function(
        FunctionName="orders", Runtime="python3.12", Role=role, Handler="handler.py",
        Code={"ZipFile": package.getvalue()},
    )
    first = lam.publish_version(FunctionName="orders")["Version"]
    lam.update_function_configuration(FunctionName="orders", Description="v2")
    second = lam.publish_version(FunctionName="orders")["Version"]
    lam.create_alias(FunctionName="orders", Name="live", FunctionVersion=first)
    client.create_application(applicationName="orders", computePlatform="Lambda")
    client.create_deployment_group(
        applicationName="orders",
        deploymentGroupName="live",
        serviceRoleArn="arn:aws:iam::123456789012:role/CodeDeploy",
    )
    appspec = (
        "version: 0.0\nResources:\n  - orders:\n      Type: AWS::Lambda::Function\n"
        "      Properties: {Name: orders, Alias: live, "
        f"CurrentVersion: {first}, TargetVersion: {second}}}\n"
    )
    created = client.create_deployment(
        applicationName="orders",
        deploymentGroupName="live",
        revision={"revisionType": "AppSpecContent", "appSpecContent": {"content": appspec}},
    )
    return created["deploymentId"]


def instance_deployment(client):
    """On-premises instance `shop-1` tagged role=web and a revision of `shop` in the bundle
    bucket, deployed in place to group `hosts`; no agent runs, so it waits in progress.
    Its deployment id and revision, once its instance is planned."""
    import io
    import time
    import zipfile

    bundle = io.BytesIO()
    with zipfile.ZipFile(bundle, "w") as archive:
        archive.writestr(
            "appspec.yml",
            "version: 0.0\nos: linux\nfiles:\n  - source: index.html\n    destination: /tmp/shop\n",
        )
        archive.writestr("index.html", "hello\n")
    s3 = boto3.client("s3", region_name="us-east-1")
    s3.put_bucket_versioning(
        Bucket="gantry-revisions", VersioningConfiguration={"Status": "Enabled"}
    )
    put = s3.put_object(Bucket="gantry-revisions", Key="shop/v1.zip", Body=bundle.getvalue())
    revision = {
        "revisionType": "S3",
        "s3Location": {
            "bucket": "gantry-revisions", "key": "shop/v1.zip", "bundleType": "zip",
            "eTag": put["ETag"].strip('"'), "version": put["VersionId"],
        },
    }
    user = boto3.client("iam", region_name="us-east-1").create_user(UserName="shop-1")
    client.register_on_premises_instance(instanceName="shop-1", iamUserArn=user["User"]["Arn"])
    client.add_tags_to_on_premises_instances(
        instanceNames=["shop-1"], tags=[{"Key": "role", "Value": "web"}]
    )
    client.register_application_revision(applicationName="shop", revision=revision, description="v1")
    client.create_deployment_group(
        applicationName="shop",
        deploymentGroupName="hosts",
        serviceRoleArn="arn:aws:iam::123456789012:role/CodeDeploy",
        onPremisesInstanceTagFilters=[{"Key": "role", "Value": "web", "Type": "KEY_AND_VALUE"}],
        autoRollbackConfiguration={"enabled": True, "events": ["DEPLOYMENT_FAILURE"]},
    )
    deployment = client.create_deployment(
        applicationName="shop", deploymentGroupName="hosts", revision=revision,
        description="conformance",
        overrideAlarmConfiguration={
            "enabled": True, "ignorePollAlarmFailure": True, "alarms": [{"name": "latency"}],
        },
    )["deploymentId"]
    deadline = time.monotonic() + 30
    while not client.list_deployment_instances(deploymentId=deployment)["instancesList"]:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{deployment} planned no instance in 30 s")
        time.sleep(0.2)
    return deployment, revision


# Optional members Gantry never answers, and why; every other member of every answer read
# must be there in at least one answer. (A member listed here that is there after all is a
# finding too, so the list stays true.)
AFTER_A_RUN = "answered once a deployment ran on hosts: answers.py checks it after the quick start"
NOT_HERE = "a deployment with a load balancer or a blue/green one needs EC2 instances, not made here"
ONE_PAGE = "answered when a list holds more than one page: paging.py pages every list operation"
NEVER_ANSWERED = {
    "ApplicationInfo.gitHubAccountName": "Gantry keeps no GitHub OAuth connections (README)",
    "BatchGetApplicationRevisionsOutput.errorMessage": "what is not found is left out, with no error",
    "BatchGetDeploymentGroupsOutput.errorMessage": "what is not found is left out, with no error",
    "BatchGetDeploymentInstancesOutput.errorMessage": "what is not found is left out, with no error",
    "DeploymentGroupInfo.ec2DeploymentOptions": "taken only empty (README); nothing to answer",
    "DeploymentInfo.ec2DeploymentOptions": "taken only empty (README); nothing to answer",
    "DeploymentGroupInfo.ecsServices": "the ECS platform is not Gantry's",
    "DeploymentTarget.ecsTarget": "the ECS platform is not Gantry's",
    "DeploymentTarget.cloudFormationTarget": "CloudFormation blue/green deployments are not Gantry's",
    "DeploymentInfo.externalId": "set by CloudFormation blue/green deployments only",
    "LoadBalancerInfo.elbInfoList": "Classic Load Balancers are not Gantry's: target groups only",
    "LoadBalancerInfo.targetGroupPairInfoList": "target group pairs are for ECS",
    "DeploymentInfo.additionalDeploymentStatusInfo": "deprecated by CodeDeploy",
    "DeploymentInfo.deploymentStatusMessages": "Gantry says why in errorInformation",
    "DeploymentInfo.deploymentMode": "absent for STANDARD deployments (the model says so); RESTART is refused",
    "DeploymentInfo.relatedDeployments": "an update of an Auto Scaling group's outdated instances: control_moto's launches test",
    "RevisionLocation.gitHubLocation": "GitHub revisions are not taken yet",
    "RevisionLocation.string": "the deprecated String type: answered for a deployment given one",
    "DeploymentGroupInfo.targetRevision": AFTER_A_RUN,
    "DeploymentInfo.previousRevision": AFTER_A_RUN,
    "DeploymentInfo.rollbackInfo": AFTER_A_RUN,
    "GenericRevisionInfo.deploymentGroups": AFTER_A_RUN,
    "LifecycleEvent.diagnostics": AFTER_A_RUN,
    "DeploymentInfo.blueGreenDeploymentConfiguration": NOT_HERE,
    "DeploymentInfo.loadBalancerInfo": NOT_HERE,
    "DeploymentInfo.targetInstances": NOT_HERE,
    "ListApplicationRevisionsOutput.nextToken": ONE_PAGE,
    "ListApplicationsOutput.nextToken": ONE_PAGE,
    "ListDeploymentConfigsOutput.nextToken": ONE_PAGE,
    "ListDeploymentGroupsOutput.nextToken": ONE_PAGE,
    "ListDeploymentInstancesOutput.nextToken": ONE_PAGE,
    "ListDeploymentTargetsOutput.nextToken": ONE_PAGE,
    "ListDeploymentsOutput.nextToken": ONE_PAGE,
    "ListOnPremisesInstancesOutput.nextToken": ONE_PAGE,
    "ListTagsForResourceOutput.NextToken": "an application has at most 50 tags, one page",
}


def presence(value, shape, seen):
    """Marks in `seen[(structure, member)]` whether that member was in `value` (an answer
    of `shape`), for every structure nested in it."""
    if shape.type_name == "structure" and isinstance(value, dict):
        for name, member in shape.members.items():
            seen[(shape.name, name)] = seen.get((shape.name, name), False) or name in value
            if name in value:
                presence(value[name], member, seen)
    elif shape.type_name == "list" and isinstance(value, list):
        for item in value:
            presence(item, shape.member, seen)
    elif shape.type_name == "map" and isinstance(value, dict):
        for item in value.values():
            presence(item, shape.value, seen)


def ended(client, deployment):
    """Waits (30 s at most) until `deployment` has ended."""
    import time

    deadline = time.monotonic() + 30
    while client.get_deployment(deploymentId=deployment)["deploymentInfo"]["status"] not in (
        "Succeeded", "Failed", "Stopped",
    ):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{deployment} did not end in 30 s")
        time.sleep(0.2)


class Answers:
    """Operations called through boto3 whose raw answers are checked against the model:
    their shape (types, required members, no member the model does not know but
    Gantry's additions), and which optional members were there (`seen`)."""

    def __init__(self, endpoint):
        self.model = botocore.session.get_session().get_service_model("codedeploy")
        self.client = boto3.client(
            "codedeploy",
            endpoint_url=endpoint,
            region_name="us-east-1",
            config=Config(retries={"max_attempts": 1}),
        )
        self.raw = {}
        self.found = []
        self.seen = {}
        self.client.meta.events.register("after-call.codedeploy", self._keep)

    def _keep(self, http_response, model, **_):
        self.raw[model.name] = http_response.content

    def read(self, name, **given):
        """Calls operation `name` with `given`; its answer as boto3 parses it."""
        parsed = getattr(self.client, botocore.xform_name(name))(**given)
        answer = json.loads(self.raw[name] or b"{}")
        shape = self.model.operation_model(name).output_shape
        presence(answer, shape, self.seen)
        report = ParamValidator().validate(answer, shape)
        for line in report.generate_report().splitlines():
            if line.startswith("Unknown parameter") and any(
                f'"{member}"' in line for member in GANTRY_ADDITIONS
            ):
                continue
            if line.strip():
                self.found.append({"operation": name, "finding": "answer", "message": line})
        return parsed

    def never_seen(self, member):
        """Whether `Structure.member` was in no answer read."""
        return not self.seen.get(tuple(member.split(".")), False)


def output_findings(endpoint):
    answers = Answers(endpoint)
    client = answers.client
    client.create_application(applicationName="shop", tags=[{"Key": "team", "Value": "web"}])
    client.create_deployment_config(
        deploymentConfigName="TwoHealthy",
        minimumHealthyHosts={"type": "HOST_COUNT", "value": 2},
    )
    client.create_deployment_group(
        applicationName="shop",
        deploymentGroupName="web",
        serviceRoleArn="arn:aws:iam::123456789012:role/CodeDeploy",
        onPremisesInstanceTagFilters=[{"Key": "role", "Value": "web", "Type": "KEY_AND_VALUE"}],
        alarmConfiguration={"enabled": True, "alarms": [{"name": "errors"}]},
        triggerConfigurations=[{
            "triggerName": "all",
            "triggerTargetArn": "arn:aws:sns:us-east-1:123456789012:deploys",
            "triggerEvents": ["DeploymentFailure"],
        }],
    )
    client.create_deployment_config(
        deploymentConfigName="Zonal",
        minimumHealthyHosts={"type": "FLEET_PERCENT", "value": 50},
        zonalConfig={
            "firstZoneMonitorDurationInSeconds": 60,
            "monitorDurationInSeconds": 30,
            "minimumHealthyHostsPerZone": {"type": "HOST_COUNT", "value": 1},
        },
    )
    # Tag sets, and a blue/green group with a load balancer.
    client.create_deployment_group(
        applicationName="shop",
        deploymentGroupName="sets",
        serviceRoleArn="arn:aws:iam::123456789012:role/CodeDeploy",
        ec2TagSet={"ec2TagSetList": [[{"Key": "role", "Value": "web", "Type": "KEY_AND_VALUE"}]]},
        onPremisesTagSet={"onPremisesTagSetList": [[{"Key": "role", "Value": "web", "Type": "KEY_AND_VALUE"}]]},
    )
    client.create_deployment_group(
        applicationName="shop",
        deploymentGroupName="fleet",
        serviceRoleArn="arn:aws:iam::123456789012:role/CodeDeploy",
        ec2TagFilters=[{"Key": "role", "Value": "web", "Type": "KEY_AND_VALUE"}],
        deploymentStyle={"deploymentType": "BLUE_GREEN", "deploymentOption": "WITH_TRAFFIC_CONTROL"},
        blueGreenDeploymentConfiguration={
            "terminateBlueInstancesOnDeploymentSuccess": {"action": "KEEP_ALIVE"},
            "deploymentReadyOption": {"actionOnTimeout": "CONTINUE_DEPLOYMENT"},
            "greenFleetProvisioningOption": {"action": "DISCOVER_EXISTING"},
        },
        loadBalancerInfo={"targetGroupInfoList": [{"name": "web"}]},
    )
    # An instance registered with a session ARN, then deregistered.
    account = boto3.client("sts", region_name="us-east-1").get_caller_identity()["Account"]
    boto3.client("iam", region_name="us-east-1").create_role(
        RoleName="hosts",
        AssumeRolePolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": []}),
    )
    client.register_on_premises_instance(
        instanceName="shop-2", iamSessionArn=f"arn:aws:sts::{account}:assumed-role/hosts/shop-2"
    )
    client.deregister_on_premises_instance(instanceName="shop-2")
    arn = f"arn:aws:codedeploy:us-east-1:{account}:application:shop"
    deployment = lambda_deployment(client)
    in_place, revision = instance_deployment(client)
    substitutes = {
        '"DEPLOYMENT"': json.dumps(deployment),
        '"INSTANCE_DEPLOYMENT"': json.dumps(in_place),
        '"REVISION"': json.dumps(revision),
    }

    def read_all(reads):
        for name, given in reads:
            if "ResourceArn" in given:
                given = {"ResourceArn": arn}
            given = json.dumps(given)
            for placeholder, value in substitutes.items():
                given = given.replace(placeholder, value)
            answers.read(name, **json.loads(given))

    read_all(READS + DEPLOYMENT_READS + INSTANCE_READS)
    client.stop_deployment(deploymentId=in_place, autoRollbackEnabled=False)
    ended(client, in_place)
    read_all(INSTANCE_READS)
    ended(client, deployment)
    read_all(DEPLOYMENT_READS)
    found = answers.found
    for (structure, member), there in sorted(answers.seen.items()):
        reason = NEVER_ANSWERED.get(f"{structure}.{member}")
        if not there and reason is None:
            found.append({"finding": "never answered", "member": f"{structure}.{member}"})
        elif there and reason is not None:
            found.append({"finding": "answered, though listed as never", "member": f"{structure}.{member}"})
    return found


def main():
    found = findings(sys.argv[1]) + output_findings(sys.argv[1])
    for finding in found:
        print(json.dumps(finding))
    sys.exit(1 if found else 0)


if __name__ == "__main__":
    main()
