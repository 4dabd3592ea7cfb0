"""The stand-in's load balancer (tests/standin/proxy.py): an HTTP reverse proxy per ELBv2
HTTP listener, at the load balancer's DNSName, to healthy targets round robin."""

import json
import threading
import unittest
import urllib.error
import urllib.request
import uuid

from standin import addresses
from standin_fixture import App, StandInTestCase, free_port, wait_until


class ProxyTest(StandInTestCase):
    def setUp(self):
        self.elb = self.client("elbv2")
        self.ec2 = self.client("ec2")
        self.name = "p-" + uuid.uuid4().hex[:12]
        subnets = self.ec2.describe_subnets()["Subnets"][:2]
        self.vpc = subnets[0]["VpcId"]
        balancer = self.elb.create_load_balancer(Name=self.name, Subnets=[s["SubnetId"] for s in subnets])[
            "LoadBalancers"][0]
        self.balancer = balancer["LoadBalancerArn"]
        self.dns_name = balancer["DNSName"]
        self.port = free_port()
        self.group = self.elb.create_target_group(
            Name=self.name, Protocol="HTTP", Port=self.port, VpcId=self.vpc, HealthCheckPath="/health",
            HealthCheckIntervalSeconds=1, HealthyThresholdCount=2, UnhealthyThresholdCount=2)["TargetGroups"][0][
            "TargetGroupArn"]
        self.elb.modify_target_group_attributes(
            TargetGroupArn=self.group, Attributes=[{"Key": "deregistration_delay.timeout_seconds", "Value": "30"}])
        self.apps = {}
        self.addCleanup(lambda: [app.stop() for app in self.apps.values()])

    def listen(self, port=80):
        return self.elb.create_listener(LoadBalancerArn=self.balancer, Protocol="HTTP", Port=port,
                                        DefaultActions=[{"Type": "forward", "TargetGroupArn": self.group}])[
            "Listeners"][0]["ListenerArn"]

    def instance(self, name):
        """A running instance with its application (answering `name`) at its address."""
        image = self.ec2.describe_images()["Images"][0]["ImageId"]
        instance = self.ec2.run_instances(ImageId=image, MinCount=1, MaxCount=1)["Instances"][0]
        self.apps[name] = App(addresses.loopback_for(instance["PrivateIpAddress"]), self.port, name)
        return instance["InstanceId"]

    def register(self, *instance_ids):
        self.elb.register_targets(TargetGroupArn=self.group, Targets=[{"Id": i} for i in instance_ids])
        for instance_id in instance_ids:
            wait_until(lambda: self.state(instance_id) == "healthy", what=f"{instance_id} healthy")

    def state(self, instance_id):
        found = self.elb.describe_target_health(TargetGroupArn=self.group, Targets=[{"Id": instance_id}])
        return found["TargetHealthDescriptions"][0]["TargetHealth"]["State"]

    def get(self, path="/", address=None):
        """(status, body) of a GET through the load balancer."""
        try:
            with urllib.request.urlopen(f"http://{address or self.dns_name}{path}", timeout=30) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as error:
            return error.code, error.read().decode()

    def test_the_dns_name_is_a_loopback_port_that_answers_once_a_listener_exists(self):
        host, _, port = self.dns_name.partition(":")
        self.assertEqual(host, "127.0.0.1")
        self.assertTrue(int(port) > 0)
        with self.assertRaises(urllib.error.URLError):
            self.get()
        self.listen()
        self.assertEqual(self.get()[0], 503, "no target yet")

    def test_requests_go_round_robin_to_healthy_targets_only(self):
        self.listen()
        a, b = self.instance("a"), self.instance("b")
        self.register(a, b)
        answers = [self.get() for _ in range(6)]
        self.assertEqual(sorted(answers), [(200, "a")] * 3 + [(200, "b")] * 3)

        self.apps["b"].health_status = 500
        wait_until(lambda: self.state(b) == "unhealthy", what="b unhealthy")
        self.assertEqual({self.get() for _ in range(4)}, {(200, "a")})

    def test_a_draining_target_finishes_its_requests_and_gets_no_new_ones(self):
        self.listen()
        a, b = self.instance("a"), self.instance("b")
        self.register(a)
        slow = {}
        thread = threading.Thread(target=lambda: slow.update(answer=self.get("/slow")))
        thread.start()
        self.addCleanup(thread.join, 30)
        self.addCleanup(self.apps["a"].release.set)
        self.assertTrue(self.apps["a"].slow_started.wait(10), "the slow request reached a")
        self.register(b)

        self.elb.deregister_targets(TargetGroupArn=self.group, Targets=[{"Id": a}])
        self.assertEqual(self.state(a), "draining")
        self.assertEqual({self.get() for _ in range(4)}, {(200, "b")})
        self.apps["a"].release.set()
        thread.join(30)
        self.assertEqual(slow["answer"], (200, "a"), "the in-flight request finished")

    def test_no_request_fails_while_a_target_is_taken_out_and_put_back(self):
        self.listen()
        a, b = self.instance("a"), self.instance("b")
        self.register(a, b)
        answers, done = [], threading.Event()

        def loop():
            # Bounded in count and time: at most 2,000 requests.
            while not done.is_set() and len(answers) < 2000:
                answers.append(self.get())

        thread = threading.Thread(target=loop)
        thread.start()
        try:
            wait_until(lambda: len(answers) >= 20, what="requests flowing")
            self.elb.deregister_targets(TargetGroupArn=self.group, Targets=[{"Id": a}])
            count = len(answers)
            wait_until(lambda: len(answers) >= count + 20, what="requests while a drains")
            self.elb.register_targets(TargetGroupArn=self.group, Targets=[{"Id": a}])
            wait_until(lambda: self.state(a) == "healthy", what="a healthy again")
            count = len(answers)
            wait_until(lambda: len(answers) >= count + 20, what="requests after")
        finally:
            done.set()
            thread.join(30)
        self.assertEqual({status for status, _ in answers}, {200})
        self.assertEqual({body for _, body in answers}, {"a", "b"})
        self.assertEqual(answers[-1][0], 200)

    def test_a_target_that_does_not_answer_is_a_bad_gateway(self):
        self.listen()
        a = self.instance("a")
        self.register(a)
        self.apps.pop("a").stop()
        # Until its health checks fail, the proxy still sends to it.
        self.assertEqual(self.get()[0], 502)

    def test_every_http_listener_is_listed_and_served_and_a_deleted_one_stops(self):
        first, second = self.listen(80), self.listen(8080)
        a = self.instance("a")
        self.register(a)
        with urllib.request.urlopen(self.endpoint + "/moto-api/standin/listeners", timeout=5) as response:
            listed = {entry["ListenerArn"]: entry for entry in json.load(response)}
        self.assertEqual(listed[first]["Address"], self.dns_name)
        self.assertEqual((listed[first]["Port"], listed[second]["Port"]), (80, 8080))
        self.assertEqual(listed[second]["LoadBalancerArn"], self.balancer)
        self.assertNotEqual(listed[second]["Address"], self.dns_name)
        self.assertEqual(self.get(address=listed[second]["Address"]), (200, "a"))

        self.elb.delete_listener(ListenerArn=first)
        with self.assertRaises(urllib.error.URLError):
            self.get()
        self.assertEqual(self.get(address=listed[second]["Address"]), (200, "a"))

    def test_a_reset_of_moto_stops_its_load_balancers(self):
        self.listen()
        self.assertEqual(self.get()[0], 503)
        request = urllib.request.Request(self.endpoint + "/moto-api/reset", method="POST")
        urllib.request.urlopen(request, timeout=10).close()
        with self.assertRaises(urllib.error.URLError):
            self.get()


if __name__ == "__main__":
    unittest.main()
