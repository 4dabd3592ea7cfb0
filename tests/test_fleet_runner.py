"""The fleet runner (tests/fleet_runner.py) and its instance metadata service
(tests/standin/imds.py): a process per running instance, with an EC2 identity and
credentials from IMDSv2, stopped when the instance terminates. The process here is a
small Python stand-in for gantry-agent that reports what it found."""

import json
import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import unittest

from standin_fixture import HERE, StandInTestCase, wait_until

# Reads its identity as gantry-agent does (IMDSv2), signs an SQS message with the
# credentials the SDK's default chain finds (the metadata service's), writes what it saw,
# then waits to be stopped.
FAKE_AGENT = textwrap.dedent("""
    import json, os, sys, time, urllib.error, urllib.request
    import boto3

    endpoint = os.environ["AWS_EC2_METADATA_SERVICE_ENDPOINT"]
    def get(path, token=None):
        request = urllib.request.Request(endpoint + path, headers={"X-aws-ec2-metadata-token": token} if token else {})
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as error:
            return error.code, ""
    put = urllib.request.Request(endpoint + "/latest/api/token", method="PUT",
                                 headers={"X-aws-ec2-metadata-token-ttl-seconds": "60"})
    token = urllib.request.urlopen(put, timeout=5).read().decode()
    seen = {
        "without_token": get("/latest/meta-data/instance-id")[0],
        "instance_id": get("/latest/meta-data/instance-id", token)[1],
        "zone": get("/latest/meta-data/placement/availability-zone", token)[1],
        "document": json.loads(get("/latest/dynamic/instance-identity/document", token)[1]),
        "role": get("/latest/meta-data/iam/security-credentials/", token)[1],
        "config": open("agent.yml").read(),
        "address": os.environ["GANTRY_INSTANCE_ADDRESS"],
    }
    boto3.client("sqs").send_message(QueueUrl=sys.argv[1], MessageBody=seen["instance_id"])
    with open("seen.json.tmp", "w") as out:
        json.dump(seen, out)
    os.replace("seen.json.tmp", "seen.json")
    while True:
        time.sleep(60)
""")


class FleetRunnerTest(StandInTestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.work = tempfile.TemporaryDirectory()
        cls.agent = os.path.join(cls.work.name, "agent.py")
        with open(cls.agent, "w") as out:
            out.write(FAKE_AGENT)
        template = os.path.join(cls.work.name, "agent.yml.in")
        with open(template, "w") as out:
            out.write('identity: {{ec2: {{metadata_endpoint: "{metadata_endpoint}"}}}}\nroot_dir: {dir}/root\n')
        sqs, iam = cls.client(cls, "sqs"), cls.client(cls, "iam")
        cls.queue_url = sqs.create_queue(QueueName="fleet")["QueueUrl"]
        cls.role = iam.create_role(RoleName="hosts", AssumeRolePolicyDocument="{}")["Role"]
        iam.create_instance_profile(InstanceProfileName="hosts")
        iam.add_role_to_instance_profile(InstanceProfileName="hosts", RoleName="hosts")
        cls.fleet = os.path.join(cls.work.name, "fleet")
        cls.runner = subprocess.Popen(
            [sys.executable, os.path.join(HERE, "fleet_runner.py"), "--endpoint", cls.endpoint, "--dir", cls.fleet,
             "--command", f"{sys.executable} {cls.agent} {cls.queue_url}", "--config-template", template,
             "--grace", "2"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    @classmethod
    def tearDownClass(cls):
        cls.runner.send_signal(signal.SIGTERM)
        try:
            cls.runner.wait(15)
        except subprocess.TimeoutExpired:
            cls.runner.kill()
            cls.runner.wait()
        cls.work.cleanup()
        super().tearDownClass()

    def status(self):
        try:
            with open(os.path.join(self.fleet, "fleet.json")) as f:
                return json.load(f)
        except (OSError, ValueError):
            return {}

    def seen(self, instance_id):
        def read():
            try:
                with open(os.path.join(self.fleet, instance_id, "seen.json")) as f:
                    return json.load(f)
            except OSError:
                return None
        return wait_until(read, timeout=30, what=f"{instance_id}'s agent to report")

    def alive(self, pid):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        # A zombie is dead too: the runner reaps it.
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"

    def sender_of(self, instance_id):
        sqs = self.client("sqs")

        def find():
            got = sqs.receive_message(QueueUrl=self.queue_url, MessageSystemAttributeNames=["SenderId"],
                                      MaxNumberOfMessages=10, WaitTimeSeconds=1).get("Messages", [])
            for message in got:
                sqs.delete_message(QueueUrl=self.queue_url, ReceiptHandle=message["ReceiptHandle"])
                if message["Body"] == instance_id:
                    return message["Attributes"]["SenderId"]
        return wait_until(find, timeout=30, what="the agent's message")

    def test_an_instance_gets_an_agent_with_its_identity_until_it_terminates(self):
        ec2 = self.client("ec2")
        image = ec2.describe_images()["Images"][0]["ImageId"]
        instance = ec2.run_instances(ImageId=image, MinCount=1, MaxCount=1,
                                     IamInstanceProfile={"Name": "hosts"})["Instances"][0]
        instance_id = instance["InstanceId"]
        seen = self.seen(instance_id)
        self.assertEqual(seen["without_token"], 401, "IMDSv2 only")
        self.assertEqual(seen["instance_id"], instance_id)
        self.assertEqual(seen["zone"], instance["Placement"]["AvailabilityZone"])
        self.assertEqual(seen["document"]["instanceId"], instance_id)
        self.assertEqual(seen["document"]["privateIp"], instance["PrivateIpAddress"])
        self.assertEqual(seen["role"], "hosts")
        host = self.status()[instance_id]
        self.assertEqual(seen["address"], host["address"])
        self.assertTrue(host["address"].startswith("127.") and host["address"] != "127.0.0.1")
        self.assertIn(f'metadata_endpoint: "http://{host["address"]}:', seen["config"])
        self.assertEqual(self.sender_of(instance_id), f"{self.role['RoleId']}:{instance_id}",
                         "signed by the instance profile's role, session named after the instance")

        ec2.terminate_instances(InstanceIds=[instance_id])
        wait_until(lambda: instance_id not in self.status(), timeout=30, what="the runner to let it go")
        self.assertFalse(self.alive(host["pid"]))

    def test_an_auto_scaling_instance_gets_its_launch_configurations_profile_and_an_agent(self):
        asg, ec2 = self.client("autoscaling"), self.client("ec2")
        image = ec2.describe_images()["Images"][0]["ImageId"]
        asg.create_launch_configuration(LaunchConfigurationName="fleet", ImageId=image, InstanceType="t3.micro",
                                        IamInstanceProfile="hosts")
        asg.create_auto_scaling_group(AutoScalingGroupName="fleet", LaunchConfigurationName="fleet", MinSize=0,
                                      MaxSize=2, DesiredCapacity=0, AvailabilityZones=["us-east-1a"])
        self.addCleanup(asg.delete_auto_scaling_group, AutoScalingGroupName="fleet")
        asg.set_desired_capacity(AutoScalingGroupName="fleet", DesiredCapacity=1)
        (instance,) = asg.describe_auto_scaling_groups(AutoScalingGroupNames=["fleet"])["AutoScalingGroups"][0][
            "Instances"]
        instance_id = instance["InstanceId"]
        described = ec2.describe_instances(InstanceIds=[instance_id])["Reservations"][0]["Instances"][0]
        self.assertTrue(described["IamInstanceProfile"]["Arn"].endswith("/hosts"))
        self.assertEqual(self.seen(instance_id)["role"], "hosts")
        self.assertEqual(self.sender_of(instance_id), f"{self.role['RoleId']}:{instance_id}")
        pid = self.status()[instance_id]["pid"]

        asg.set_desired_capacity(AutoScalingGroupName="fleet", DesiredCapacity=0)
        wait_until(lambda: instance_id not in self.status(), timeout=30, what="the runner to let it go")
        self.assertFalse(self.alive(pid))


if __name__ == "__main__":
    unittest.main()
