"""ELBv2 target health from real health checks in the stand-in (tests/standin/health.py),
with each instance's application on its own loopback address (tests/standin/addresses.py)."""

import unittest
import uuid

from standin import addresses
from standin_fixture import App, StandInTestCase, free_port, wait_until


class HealthTest(StandInTestCase):
    def setUp(self):
        self.elb = self.client("elbv2")
        self.ec2 = self.client("ec2")
        self.name = "h-" + uuid.uuid4().hex[:12]  # ELB names: letters, digits, hyphens
        subnets = self.ec2.describe_subnets()["Subnets"][:2]
        self.vpc = subnets[0]["VpcId"]
        self.balancer = self.elb.create_load_balancer(Name=self.name, Subnets=[s["SubnetId"] for s in subnets])[
            "LoadBalancers"][0]["LoadBalancerArn"]
        self.apps = []
        self.addCleanup(lambda: [app.stop() for app in self.apps])

    def target_group(self, listen=True, **settings):
        options = dict(Name=f"{self.name}-{len(self.apps)}"[:32], Protocol="HTTP", Port=free_port(), VpcId=self.vpc,
                       HealthCheckPath="/health", HealthCheckIntervalSeconds=1, HealthyThresholdCount=2,
                       UnhealthyThresholdCount=2)
        options.update(settings)
        arn = self.elb.create_target_group(**options)["TargetGroups"][0]["TargetGroupArn"]
        if listen:
            self.elb.create_listener(LoadBalancerArn=self.balancer, Protocol="HTTP", Port=80,
                                     DefaultActions=[{"Type": "forward", "TargetGroupArn": arn}])
        return arn

    def instance(self):
        """A running instance and where its application listens (the convention)."""
        image = self.ec2.describe_images()["Images"][0]["ImageId"]
        instance = self.ec2.run_instances(ImageId=image, MinCount=1, MaxCount=1)["Instances"][0]
        return instance["InstanceId"], addresses.loopback_for(instance["PrivateIpAddress"])

    def app(self, host, port, name="app"):
        app = App(host, port, name)
        self.apps.append(app)
        return app

    def health(self, arn, instance_id=None):
        targets = [{"Id": instance_id}] if instance_id else []
        found = self.elb.describe_target_health(TargetGroupArn=arn, Targets=targets)["TargetHealthDescriptions"]
        return {d["Target"]["Id"]: d["TargetHealth"] for d in found}

    def state(self, arn, instance_id):
        return self.health(arn, instance_id)[instance_id]["State"]

    def test_the_address_convention(self):
        self.assertEqual(addresses.loopback_for("172.31.5.6"), "127.31.5.6")
        instance_id, host = self.instance()
        self.assertTrue(host.startswith("127."))
        self.assertNotEqual(host, "127.0.0.1")

    def test_a_target_goes_from_initial_to_healthy_and_back_and_forth(self):
        arn = self.target_group()
        port = self.elb.describe_target_groups(TargetGroupArns=[arn])["TargetGroups"][0]["Port"]
        interval = self.elb.describe_target_groups(TargetGroupArns=[arn])["TargetGroups"][0][
            "HealthCheckIntervalSeconds"]
        self.assertEqual(interval, 1, "short intervals are allowed for tests")
        instance_id, host = self.instance()
        app = self.app(host, port)
        self.elb.register_targets(TargetGroupArn=arn, Targets=[{"Id": instance_id}])
        first = self.health(arn)[instance_id]
        self.assertEqual((first["State"], first["Reason"]), ("initial", "Elb.InitialHealthChecking"))
        wait_until(lambda: self.state(arn, instance_id) == "healthy", what="healthy")
        self.assertNotIn("Reason", self.health(arn)[instance_id])

        app.health_status = 500
        wait_until(lambda: self.state(arn, instance_id) == "unhealthy", what="unhealthy")
        health = self.health(arn)[instance_id]
        self.assertEqual(health["Reason"], "Target.ResponseCodeMismatch")
        self.assertEqual(health["Description"], "Health checks failed with these codes: [500]")

        app.health_status = 200
        wait_until(lambda: self.state(arn, instance_id) == "healthy", what="healthy again")

    def test_the_matcher_decides_which_codes_pass(self):
        arn = self.target_group(Matcher={"HttpCode": "200-299"})
        port = self.elb.describe_target_groups(TargetGroupArns=[arn])["TargetGroups"][0]["Port"]
        instance_id, host = self.instance()
        self.app(host, port).health_status = 204
        self.elb.register_targets(TargetGroupArn=arn, Targets=[{"Id": instance_id}])
        wait_until(lambda: self.state(arn, instance_id) == "healthy", what="healthy with 204")

    def test_a_target_nobody_answers_for_is_unhealthy(self):
        arn = self.target_group()
        instance_id, _ = self.instance()
        self.elb.register_targets(TargetGroupArn=arn, Targets=[{"Id": instance_id}])
        wait_until(lambda: self.state(arn, instance_id) == "unhealthy", what="unhealthy")
        self.assertEqual(self.health(arn)[instance_id]["Reason"], "Target.FailedHealthChecks")

    def test_a_target_group_no_listener_uses_is_not_checked(self):
        arn = self.target_group(listen=False)
        instance_id, _ = self.instance()
        self.elb.register_targets(TargetGroupArn=arn, Targets=[{"Id": instance_id}])
        health = self.health(arn)[instance_id]
        self.assertEqual((health["State"], health["Reason"]), ("unused", "Target.NotInUse"))

    def test_a_deregistered_target_drains_for_the_delay_then_is_gone(self):
        arn = self.target_group()
        self.elb.modify_target_group_attributes(
            TargetGroupArn=arn, Attributes=[{"Key": "deregistration_delay.timeout_seconds", "Value": "2"}])
        port = self.elb.describe_target_groups(TargetGroupArns=[arn])["TargetGroups"][0]["Port"]
        instance_id, host = self.instance()
        self.app(host, port)
        self.elb.register_targets(TargetGroupArn=arn, Targets=[{"Id": instance_id}])
        wait_until(lambda: self.state(arn, instance_id) == "healthy", what="healthy")

        self.elb.deregister_targets(TargetGroupArn=arn, Targets=[{"Id": instance_id}])
        listed = self.health(arn)
        self.assertEqual(list(listed), [instance_id], "a draining target is still listed")
        self.assertEqual((listed[instance_id]["State"], listed[instance_id]["Reason"]),
                         ("draining", "Target.DeregistrationInProgress"))
        wait_until(lambda: self.health(arn) == {}, timeout=10, what="the draining to end")
        health = self.health(arn, instance_id)[instance_id]
        self.assertEqual((health["State"], health["Reason"]), ("unused", "Target.NotRegistered"))

        # Registered again, it starts over.
        self.elb.register_targets(TargetGroupArn=arn, Targets=[{"Id": instance_id}])
        self.assertEqual(self.state(arn, instance_id), "initial")

    def test_an_auto_scaling_instance_is_registered_once_its_launch_completes_and_drains_when_scaled_in(self):
        arn = self.target_group()
        self.elb.modify_target_group_attributes(
            TargetGroupArn=arn, Attributes=[{"Key": "deregistration_delay.timeout_seconds", "Value": "30"}])
        asg, sqs = self.client("autoscaling"), self.client("sqs")
        image = self.ec2.describe_images()["Images"][0]["ImageId"]
        asg.create_launch_configuration(LaunchConfigurationName=self.name, ImageId=image, InstanceType="t3.micro")
        asg.create_auto_scaling_group(AutoScalingGroupName=self.name, LaunchConfigurationName=self.name, MinSize=0,
                                      MaxSize=2, DesiredCapacity=0, AvailabilityZones=["us-east-1a"],
                                      TargetGroupARNs=[arn])
        self.addCleanup(asg.delete_auto_scaling_group, AutoScalingGroupName=self.name)
        sqs.create_queue(QueueName=self.name)
        asg.put_lifecycle_hook(AutoScalingGroupName=self.name, LifecycleHookName="launch",
                               LifecycleTransition="autoscaling:EC2_INSTANCE_LAUNCHING",
                               NotificationTargetARN=f"arn:aws:sqs:us-east-1:123456789012:{self.name}",
                               RoleARN="arn:aws:iam::123456789012:role/hooks")
        asg.set_desired_capacity(AutoScalingGroupName=self.name, DesiredCapacity=1)
        (instance,) = asg.describe_auto_scaling_groups(AutoScalingGroupNames=[self.name])["AutoScalingGroups"][0][
            "Instances"]
        self.assertEqual(instance["LifecycleState"], "Pending:Wait")
        self.assertEqual(self.health(arn), {}, "not registered while its launch waits")

        asg.complete_lifecycle_action(AutoScalingGroupName=self.name, LifecycleHookName="launch",
                                      InstanceId=instance["InstanceId"], LifecycleActionResult="CONTINUE")
        self.assertEqual(self.state(arn, instance["InstanceId"]), "initial")

        asg.set_desired_capacity(AutoScalingGroupName=self.name, DesiredCapacity=0)
        self.assertEqual(self.state(arn, instance["InstanceId"]), "draining")


if __name__ == "__main__":
    unittest.main()
