"""Gantry against CodeDeploy's service model (botocore's, in .venv): every operation, called
through boto3 over CodeDeploy's own protocol with every documented input member given,
must be served, must not refuse a documented member as unknown, and may fail only with an
exception the model documents for that operation (or one of AWS's common errors). Then the
answers of the read operations, over an application, a configuration and a group made
first, must have the model's shape: every member of its type, every required member
there, and no member the model does not know but Gantry's documented additions.

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


def output_findings(endpoint):
    session = botocore.session.get_session()
    model = session.get_service_model("codedeploy")
    client = boto3.client(
        "codedeploy",
        endpoint_url=endpoint,
        region_name="us-east-1",
        config=Config(retries={"max_attempts": 1}),
    )
    raw = {}

    def keep(http_response, model, **_):
        raw[model.name] = http_response.content

    client.meta.events.register("after-call.codedeploy", keep)
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
    arn = "arn:aws:codedeploy:us-east-1:{}:application:shop".format(
        boto3.client("sts", region_name="us-east-1").get_caller_identity()["Account"]
    )
    deployment = lambda_deployment(client)
    found = []
    validator = ParamValidator()
    for name, given in READS + DEPLOYMENT_READS:
        if "ResourceArn" in given:
            given = {"ResourceArn": arn}
        given = json.loads(json.dumps(given).replace('"DEPLOYMENT"', json.dumps(deployment)))
        getattr(client, botocore.xform_name(name))(**given)
        answer = json.loads(raw[name] or b"{}")
        report = validator.validate(answer, model.operation_model(name).output_shape)
        for line in report.generate_report().splitlines():
            if line.startswith("Unknown parameter") and any(
                f'"{member}"' in line for member in GANTRY_ADDITIONS
            ):
                continue
            if line.strip():
                found.append({"operation": name, "finding": "answer", "message": line})
    return found


def main():
    found = findings(sys.argv[1]) + output_findings(sys.argv[1])
    for finding in found:
        print(json.dumps(finding))
    sys.exit(1 if found else 0)


if __name__ == "__main__":
    main()
