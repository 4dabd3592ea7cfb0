"""Auto Scaling lifecycle hooks in the stand-in (tests/standin/lifecycle.py), through
boto3 against a started server."""

import json
import time
import unittest

import botocore.exceptions

from standin_fixture import StandInTestCase, wait_until

LAUNCHING = "autoscaling:EC2_INSTANCE_LAUNCHING"
TERMINATING = "autoscaling:EC2_INSTANCE_TERMINATING"


class LifecycleTest(StandInTestCase):
    def setUp(self):
        self.asg = self.client("autoscaling")
        self.sqs = self.client("sqs")
        self.ec2 = self.client("ec2")
        self.name = self.id().rsplit(".", 1)[-1][:40]
        image = self.ec2.describe_images()["Images"][0]["ImageId"]
        self.asg.create_launch_configuration(LaunchConfigurationName=self.name, ImageId=image,
                                             InstanceType="t3.micro")
        self.asg.create_auto_scaling_group(AutoScalingGroupName=self.name, LaunchConfigurationName=self.name,
                                           MinSize=0, MaxSize=5, DesiredCapacity=1,
                                           AvailabilityZones=["us-east-1a"])
        self.first = self.instances()[0]["InstanceId"]
        self.queue_url = self.sqs.create_queue(QueueName=self.name)["QueueUrl"]
        self.queue_arn = f"arn:aws:sqs:us-east-1:123456789012:{self.name}"
        self.addCleanup(self.asg.delete_auto_scaling_group, AutoScalingGroupName=self.name)

    def instances(self):
        group = self.asg.describe_auto_scaling_groups(AutoScalingGroupNames=[self.name])["AutoScalingGroups"][0]
        return group["Instances"]

    def states(self):
        return {i["InstanceId"]: i["LifecycleState"] for i in self.instances()}

    def ec2_state(self, instance_id):
        reservation = self.ec2.describe_instances(InstanceIds=[instance_id])["Reservations"][0]
        return reservation["Instances"][0]["State"]["Name"]

    def put_hook(self, transition=LAUNCHING, timeout=3600, result="ABANDON", target=None, name="hook", **extra):
        self.asg.put_lifecycle_hook(AutoScalingGroupName=self.name, LifecycleHookName=name,
                                    LifecycleTransition=transition, HeartbeatTimeout=timeout, DefaultResult=result,
                                    NotificationTargetARN=target or self.queue_arn,
                                    RoleARN="arn:aws:iam::123456789012:role/hooks", **extra)

    def receive(self, url=None):
        """The next message's body, parsed."""
        got = wait_until(lambda: self.sqs.receive_message(QueueUrl=url or self.queue_url, WaitTimeSeconds=1,
                                                          MaxNumberOfMessages=1).get("Messages"),
                         what="a message")
        self.sqs.delete_message(QueueUrl=url or self.queue_url, ReceiptHandle=got[0]["ReceiptHandle"])
        return json.loads(got[0]["Body"])

    def launch_one(self):
        """Scales out by one; the new instance's id."""
        before = set(self.states())
        self.asg.set_desired_capacity(AutoScalingGroupName=self.name, DesiredCapacity=len(before) + 1)
        (new,) = set(self.states()) - before
        return new

    def test_putting_a_hook_sends_a_test_notification_and_keeps_what_was_put(self):
        self.put_hook(NotificationMetadata='{"app": "a"}')
        test = self.receive()
        self.assertEqual(test["Event"], "autoscaling:TEST_NOTIFICATION")
        self.assertEqual(test["AutoScalingGroupName"], self.name)
        self.assertEqual(test["Service"], "AWS Auto Scaling")
        self.assertEqual(test["AccountId"], "123456789012")
        self.assertTrue(test["AutoScalingGroupARN"].startswith("arn:aws:autoscaling:us-east-1:123456789012:"))
        for key in ("RequestId", "Time"):
            self.assertTrue(test[key])
        (hook,) = self.asg.describe_lifecycle_hooks(AutoScalingGroupName=self.name)["LifecycleHooks"]
        self.assertEqual(hook["NotificationTargetARN"], self.queue_arn)
        self.assertEqual(hook["RoleARN"], "arn:aws:iam::123456789012:role/hooks")
        self.assertEqual(hook["NotificationMetadata"], '{"app": "a"}')
        self.assertEqual(hook["HeartbeatTimeout"], 3600)
        self.assertEqual(hook["DefaultResult"], "ABANDON")
        # An update keeps what it leaves out, and sends no second test notification.
        self.asg.put_lifecycle_hook(AutoScalingGroupName=self.name, LifecycleHookName="hook", HeartbeatTimeout=60)
        (hook,) = self.asg.describe_lifecycle_hooks(AutoScalingGroupName=self.name)["LifecycleHooks"]
        self.assertEqual((hook["HeartbeatTimeout"], hook["NotificationTargetARN"], hook["LifecycleTransition"]),
                         (60, self.queue_arn, LAUNCHING))
        got = self.sqs.receive_message(QueueUrl=self.queue_url, WaitTimeSeconds=0).get("Messages", [])
        self.assertEqual(got, [])

    def test_a_hook_whose_target_does_not_exist_is_refused(self):
        with self.assertRaises(botocore.exceptions.ClientError) as caught:
            self.put_hook(target="arn:aws:sqs:us-east-1:123456789012:nowhere")
        self.assertEqual(caught.exception.response["Error"]["Code"], "ValidationError")
        self.assertIn("Unable to publish test message", caught.exception.response["Error"]["Message"])

    def test_a_launch_waits_for_its_hook_and_continues(self):
        self.put_hook(NotificationMetadata="meta")
        self.receive()  # the test notification
        new = self.launch_one()
        self.assertEqual(self.states(), {self.first: "InService", new: "Pending:Wait"})
        notice = self.receive()
        self.assertEqual(notice["LifecycleTransition"], LAUNCHING)
        self.assertEqual(notice["EC2InstanceId"], new)
        self.assertEqual((notice["Origin"], notice["Destination"]), ("EC2", "AutoScalingGroup"))
        self.assertEqual((notice["LifecycleHookName"], notice["AutoScalingGroupName"]), ("hook", self.name))
        self.assertEqual((notice["Service"], notice["AccountId"]), ("AWS Auto Scaling", "123456789012"))
        self.assertEqual(notice["NotificationMetadata"], "meta")
        self.assertTrue(notice["RequestId"] and notice["Time"].endswith("Z"))
        # The waiting instance counts toward the capacity: setting it again launches none.
        self.asg.set_desired_capacity(AutoScalingGroupName=self.name, DesiredCapacity=2)
        self.assertEqual(len(self.states()), 2)

        self.asg.record_lifecycle_action_heartbeat(AutoScalingGroupName=self.name, LifecycleHookName="hook",
                                                   LifecycleActionToken=notice["LifecycleActionToken"])
        self.asg.complete_lifecycle_action(AutoScalingGroupName=self.name, LifecycleHookName="hook",
                                           LifecycleActionToken=notice["LifecycleActionToken"],
                                           LifecycleActionResult="CONTINUE")
        self.assertEqual(self.states(), {self.first: "InService", new: "InService"})
        # Done: the action is no longer pending.
        with self.assertRaises(botocore.exceptions.ClientError) as caught:
            self.asg.complete_lifecycle_action(AutoScalingGroupName=self.name, LifecycleHookName="hook",
                                               LifecycleActionToken=notice["LifecycleActionToken"],
                                               LifecycleActionResult="CONTINUE")
        self.assertEqual(caught.exception.response["Error"]["Code"], "ValidationError")
        self.assertIn("No active Lifecycle Action", caught.exception.response["Error"]["Message"])

    def test_an_abandoned_launch_is_terminated_and_replaced(self):
        self.put_hook()
        self.receive()
        new = self.launch_one()
        self.receive()
        # By instance id, without the token.
        self.asg.complete_lifecycle_action(AutoScalingGroupName=self.name, LifecycleHookName="hook",
                                           InstanceId=new, LifecycleActionResult="ABANDON")
        self.assertEqual(self.ec2_state(new), "terminated")
        states = self.states()
        self.assertNotIn(new, states)
        (replacement,) = set(states) - {self.first}
        self.assertEqual(states[replacement], "Pending:Wait")
        self.assertEqual(self.receive()["EC2InstanceId"], replacement)

    def test_every_hook_must_answer_before_a_launch_goes_on(self):
        self.put_hook(name="one")
        self.put_hook(name="two")
        self.receive(), self.receive()
        new = self.launch_one()
        notices = {n["LifecycleHookName"]: n for n in (self.receive(), self.receive())}
        self.assertEqual(set(notices), {"one", "two"})
        self.assertNotEqual(notices["one"]["LifecycleActionToken"], notices["two"]["LifecycleActionToken"])
        self.asg.complete_lifecycle_action(AutoScalingGroupName=self.name, LifecycleHookName="one",
                                           InstanceId=new, LifecycleActionResult="CONTINUE")
        self.assertEqual(self.states()[new], "Pending:Wait")
        self.asg.complete_lifecycle_action(AutoScalingGroupName=self.name, LifecycleHookName="two",
                                           InstanceId=new, LifecycleActionResult="CONTINUE")
        self.assertEqual(self.states()[new], "InService")

    def test_the_heartbeat_timeout_applies_the_default_result(self):
        self.put_hook(timeout=1, result="CONTINUE")
        self.receive()
        new = self.launch_one()
        notice = self.receive()
        # Heartbeats keep it waiting past its first timeout...
        until = time.monotonic() + 2.5
        while time.monotonic() < until:
            self.asg.record_lifecycle_action_heartbeat(AutoScalingGroupName=self.name, LifecycleHookName="hook",
                                                       InstanceId=new)
            self.assertEqual(self.states()[new], "Pending:Wait")
            time.sleep(0.3)
        # ...and without them it goes on by itself.
        wait_until(lambda: self.states()[new] == "InService", timeout=10, what="InService")
        with self.assertRaises(botocore.exceptions.ClientError):
            self.asg.record_lifecycle_action_heartbeat(AutoScalingGroupName=self.name, LifecycleHookName="hook",
                                                       LifecycleActionToken=notice["LifecycleActionToken"])

    def test_an_abandoned_timeout_terminates_the_launch(self):
        self.put_hook(timeout=1, result="ABANDON")
        self.receive()
        new = self.launch_one()
        wait_until(lambda: self.ec2_state(new) == "terminated", timeout=10, what="terminated")
        self.assertNotIn(new, self.states())

    def test_a_scale_in_waits_for_the_termination_hook_notified_through_sns(self):
        sns = self.client("sns")
        topic = sns.create_topic(Name=self.name)["TopicArn"]
        sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=self.queue_arn)
        self.put_hook(transition=TERMINATING, target=topic)
        envelope = self.receive()
        self.assertEqual(envelope["TopicArn"], topic)
        self.assertEqual(json.loads(envelope["Message"])["Event"], "autoscaling:TEST_NOTIFICATION")

        self.asg.set_desired_capacity(AutoScalingGroupName=self.name, DesiredCapacity=0)
        self.assertEqual(self.states(), {self.first: "Terminating:Wait"})
        self.assertEqual(self.ec2_state(self.first), "running")
        notice = json.loads(self.receive()["Message"])
        self.assertEqual(notice["LifecycleTransition"], TERMINATING)
        self.assertEqual((notice["Origin"], notice["Destination"]), ("AutoScalingGroup", "EC2"))
        self.assertEqual(notice["EC2InstanceId"], self.first)
        # Setting the capacity again neither launches nor terminates anything.
        self.asg.set_desired_capacity(AutoScalingGroupName=self.name, DesiredCapacity=0)
        self.assertEqual(self.states(), {self.first: "Terminating:Wait"})

        self.asg.complete_lifecycle_action(AutoScalingGroupName=self.name, LifecycleHookName="hook",
                                           LifecycleActionToken=notice["LifecycleActionToken"],
                                           LifecycleActionResult="CONTINUE")
        self.assertEqual(self.states(), {})
        self.assertEqual(self.ec2_state(self.first), "terminated")

    def test_terminate_instance_in_group_waits_and_a_replacement_launches(self):
        self.put_hook(transition=TERMINATING, timeout=1, result="CONTINUE")
        self.receive()
        self.asg.terminate_instance_in_auto_scaling_group(InstanceId=self.first,
                                                          ShouldDecrementDesiredCapacity=False)
        states = self.states()
        self.assertEqual(states.pop(self.first), "Terminating:Wait")
        self.assertEqual(list(states.values()), ["InService"], "a replacement, with no launch hook to wait on")
        self.assertEqual(self.receive()["EC2InstanceId"], self.first)
        # The timeout's default result: terminated.
        wait_until(lambda: self.first not in self.states(), timeout=10, what="the instance gone")
        self.assertEqual(self.ec2_state(self.first), "terminated")


if __name__ == "__main__":
    unittest.main()
