"""Tests of the project's moto launcher (tests/moto_server.py): the behaviour it adds to
moto, against a real server process. Run by `make test`:
    .venv/bin/python -m unittest discover -s tests -p 'test_*.py'
"""

import os
import socket
import subprocess
import sys
import time
import unittest
import urllib.request

import boto3

HERE = os.path.dirname(os.path.abspath(__file__))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class MotoServerTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        port = free_port()
        cls.endpoint = f"http://127.0.0.1:{port}"
        cls.server = subprocess.Popen([sys.executable, os.path.join(HERE, "moto_server.py"), "-p", str(port)],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(cls.endpoint + "/moto-api/", timeout=1)
                break
            except OSError:
                if time.monotonic() > deadline or cls.server.poll() is not None:
                    cls.server.kill()
                    raise
                time.sleep(0.05)

    @classmethod
    def tearDownClass(cls):
        cls.server.kill()
        cls.server.wait()

    def client(self, service, key="testing", secret="testing", token=None):
        return boto3.client(service, endpoint_url=self.endpoint, region_name="us-east-1",
                            aws_access_key_id=key, aws_secret_access_key=secret, aws_session_token=token)

    def sender_of(self, sqs, queue_url, send):
        send(sqs, queue_url)
        got = self.client("sqs").receive_message(QueueUrl=queue_url, MessageSystemAttributeNames=["SenderId"],
                                                 WaitTimeSeconds=1)
        (message,) = got["Messages"]
        return message["Attributes"]["SenderId"]

    def test_sender_id_is_the_signing_identity(self):
        iam, sts = self.client("iam"), self.client("sts")
        queue_url = self.client("sqs").create_queue(QueueName="senders")["QueueUrl"]
        user = iam.create_user(UserName="host-a")["User"]
        key = iam.create_access_key(UserName="host-a")["AccessKey"]
        as_user = self.client("sqs", key["AccessKeyId"], key["SecretAccessKey"])
        role = iam.create_role(RoleName="gantry-hosts", AssumeRolePolicyDocument="{}")["Role"]
        session = sts.assume_role(RoleArn=role["Arn"], RoleSessionName="i-0123456789abcdef0")["Credentials"]
        as_role = self.client("sqs", session["AccessKeyId"], session["SecretAccessKey"], session["SessionToken"])

        def send(sqs, url):
            sqs.send_message(QueueUrl=url, MessageBody="x")

        def send_batch(sqs, url):
            sqs.send_message_batch(QueueUrl=url, Entries=[{"Id": "1", "MessageBody": "x"}])

        for how in (send, send_batch):
            self.assertEqual(self.sender_of(as_user, queue_url, how), user["UserId"])
            self.assertEqual(self.sender_of(as_role, queue_url, how), f"{role['RoleId']}:i-0123456789abcdef0")
            # Keys moto does not know keep its constant.
            self.assertEqual(self.sender_of(self.client("sqs"), queue_url, how), "AIDAIT2UOQQY3AUEKVGXU")
        self.assertNotEqual(user["UserId"], "AIDAIT2UOQQY3AUEKVGXU")

    def test_users_have_ids_of_iams_form(self):
        iam = self.client("iam")
        created = {f"form-{n}": iam.create_user(UserName=f"form-{n}")["User"]["UserId"] for n in range(5)}
        self.assertEqual(len(set(created.values())), 5)
        for name, user_id in created.items():
            self.assertRegex(user_id, r"^AIDA[A-Z0-9]{17}$")
            self.assertEqual(iam.get_user(UserName=name)["User"]["UserId"], user_id)


if __name__ == "__main__":
    unittest.main()
