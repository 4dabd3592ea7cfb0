"""The stand-in's faults on demand (tests/standin/faults.py): an armed fault fails the
requests it matches, as many as it counts, with the service's HTTP 500, and nothing else."""

import json
import urllib.error
import urllib.request

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

from standin_fixture import StandInTestCase, create_table

TARGET = "DynamoDB_20120810.UpdateItem"
KEY = {"pk": {"S": "g"}, "sk": {"S": "web"}}


class FaultsTest(StandInTestCase):
    def arm(self, query, method="POST"):
        request = urllib.request.Request(f"{self.endpoint}/_gantry/faults?{query}", method=method)
        with urllib.request.urlopen(request, timeout=5) as response:
            return json.load(response)

    def setUp(self):
        self.arm("", method="DELETE")
        # One attempt a call, so that a fault's count is a count of calls.
        self.db = boto3.client("dynamodb", endpoint_url=self.endpoint, region_name="us-east-1",
                               aws_access_key_id="testing", aws_secret_access_key="testing",
                               config=Config(retries={"total_max_attempts": 1}))
        self.table = create_table(self.db, "faults-" + self.id().rsplit(".", 1)[-1][:40])
        self.db.put_item(TableName=self.table, Item={**KEY, "holder": {"S": "d-1"}})

    def update(self, expression, values=None):
        options = {"ExpressionAttributeValues": values} if values else {}
        return self.db.update_item(TableName=self.table, Key=KEY, UpdateExpression=expression, **options)

    def item(self):
        return self.db.get_item(TableName=self.table, Key=KEY)["Item"]

    def test_an_armed_fault_fails_the_matching_calls_it_counts_then_none(self):
        self.assertEqual(self.arm(f"target={TARGET}&contains=REMOVE+holder&count=2"), {"armed": 1})
        # Another update passes: the fault matches by body.
        self.update("SET seen = :one", {":one": {"N": "1"}})
        for _ in range(2):
            with self.assertRaises(ClientError) as failed:
                self.update("REMOVE holder")
            self.assertEqual(failed.exception.response["Error"]["Code"], "InternalServerError")
            self.assertEqual(failed.exception.response["ResponseMetadata"]["HTTPStatusCode"], 500)
        self.assertIn("holder", self.item(), "a failed call wrote nothing")
        self.update("REMOVE holder")
        self.assertNotIn("holder", self.item())
        self.assertEqual(self.item()["seen"], {"N": "1"})

    def test_a_delete_disarms_and_a_fault_needs_a_target(self):
        self.arm(f"target={TARGET}&count=5")
        self.assertEqual(self.arm("", method="DELETE"), {"armed": 0})
        self.update("REMOVE holder")
        self.assertNotIn("holder", self.item())
        with self.assertRaises(urllib.error.HTTPError) as refused:
            self.arm("count=1")
        self.assertEqual(refused.exception.code, 400)
