"""The stand-in's Lambda functions (tests/standin/lambda_runner.py): an invocation runs the
package's script with the event on stdin, an alias's weights pick the version, errors and
timeouts come back as Lambda reports them, and `Event` invocations run in the background."""

import io
import json
import os
import tempfile
import zipfile

from standin_fixture import StandInTestCase, wait_until

ECHO = b"""import json, os, sys
event = json.load(sys.stdin)
print(json.dumps({"version": os.environ["AWS_LAMBDA_FUNCTION_VERSION"], "event": event,
                  "greeting": os.environ.get("GREETING")}))
"""


def package(script, name="handler.py"):
    data = io.BytesIO()
    with zipfile.ZipFile(data, "w") as archive:
        archive.writestr(name, script)
    return data.getvalue()


class LambdaRunnerTest(StandInTestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        iam = boto3_client(cls, "iam")
        cls.role = iam.create_role(RoleName="runner", AssumeRolePolicyDocument=json.dumps({
            "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
                                                    "Principal": {"Service": "lambda.amazonaws.com"}}]}))["Role"]["Arn"]

    def setUp(self):
        self.aws = self.client("lambda")

    def function(self, name, script, handler="handler.py", timeout=3, env=None):
        self.aws.create_function(FunctionName=name, Runtime="python3.12", Role=self.role, Handler=handler,
                                 Code={"ZipFile": package(script, handler)}, Timeout=timeout,
                                 Environment={"Variables": env or {}})

    def invoke(self, name, event=None, **options):
        answer = self.aws.invoke(FunctionName=name, Payload=json.dumps(event or {}).encode(), **options)
        return answer, answer["Payload"].read()

    def test_an_invocation_runs_the_script_with_the_event_and_its_environment(self):
        self.function("echo", ECHO, env={"GREETING": "hello"})
        answer, payload = self.invoke("echo", {"n": 1})
        self.assertEqual(answer["StatusCode"], 200)
        self.assertNotIn("FunctionError", answer)
        self.assertEqual(json.loads(payload), {"version": "$LATEST", "event": {"n": 1}, "greeting": "hello"})

    def test_an_alias_sends_each_invocation_to_a_version_by_its_weight(self):
        self.function("weighted", ECHO)
        self.aws.publish_version(FunctionName="weighted")
        self.aws.update_function_code(FunctionName="weighted", ZipFile=package(ECHO + b"# v2\n"))
        self.aws.publish_version(FunctionName="weighted")
        self.aws.create_alias(FunctionName="weighted", Name="live", FunctionVersion="1",
                              RoutingConfig={"AdditionalVersionWeights": {"2": 0.3}})
        versions = [json.loads(self.invoke("weighted:live")[1])["version"] for _ in range(300)]
        share = versions.count("2") / len(versions)
        # 300 draws at 30 %: the share is within 0.18..0.42 but for odds below one in 10^4.
        self.assertTrue(0.18 < share < 0.42, share)
        self.assertEqual(set(versions), {"1", "2"})
        # A version named outright, and the alias once its routing is cleared.
        self.assertEqual(json.loads(self.invoke("weighted", Qualifier="1")[1])["version"], "1")
        self.aws.update_alias(FunctionName="weighted", Name="live", FunctionVersion="2",
                              RoutingConfig={"AdditionalVersionWeights": {}})
        self.assertEqual({json.loads(self.invoke("weighted:live")[1])["version"] for _ in range(20)}, {"2"})

    def test_a_script_that_fails_or_runs_too_long_is_a_function_error(self):
        self.function("crash", b"import sys\nsys.stderr.write('boom at line 2')\nsys.exit(3)\n")
        answer, payload = self.invoke("crash")
        self.assertEqual(answer["FunctionError"], "Unhandled")
        error = json.loads(payload)
        self.assertEqual(error["errorType"], "Runtime.ExitError")
        self.assertIn("boom at line 2", error["errorMessage"])
        self.function("slow", b"import time\ntime.sleep(30)\n", timeout=1)
        answer, payload = self.invoke("slow")
        self.assertEqual(answer["FunctionError"], "Unhandled")
        self.assertEqual(json.loads(payload)["errorType"], "Sandbox.Timedout")

    def test_a_handler_outside_the_package_never_runs(self):
        for handler in ["../../../../bin/sh", "/bin/sh"]:
            name = "escape" + str(len(handler))
            self.aws.create_function(FunctionName=name, Runtime="python3.12", Role=self.role,
                                     Handler=handler, Code={"ZipFile": package(ECHO)})
            answer, payload = self.invoke(name, {"cmd": "id"})
            self.assertEqual(answer["FunctionError"], "Unhandled")
            error = json.loads(payload)
            self.assertEqual(error["errorType"], "Runtime.InvalidEntrypoint", error)
            self.assertIn("outside the package", error["errorMessage"])

    def test_an_event_invocation_answers_at_once_and_runs_in_the_background(self):
        marker = os.path.join(tempfile.mkdtemp(), "ran")
        self.function("later", b"import json, os, sys, time\ntime.sleep(0.5)\n"
                               b"open(os.environ['MARKER'], 'w').write(sys.stdin.read())\n",
                      env={"MARKER": marker})
        answer, _ = self.invoke("later", {"hook": "BeforeAllowTraffic"}, InvocationType="Event")
        self.assertEqual(answer["StatusCode"], 202)
        self.assertFalse(os.path.exists(marker), "not waited for")
        wait_until(lambda: os.path.exists(marker) and os.path.getsize(marker) > 0, what="the background run")
        with open(marker) as ran:
            self.assertEqual(json.load(ran), {"hook": "BeforeAllowTraffic"})


def boto3_client(cls, service):
    import boto3
    from botocore.config import Config
    return boto3.client(service, endpoint_url=cls.endpoint, region_name="us-east-1",
                        aws_access_key_id="testing", aws_secret_access_key="testing",
                        config=Config(parameter_validation=False))
