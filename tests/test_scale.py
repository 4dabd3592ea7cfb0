"""The stand-in at scale (tests/standin/scale.py): TransactWriteItems all or nothing with a
rollback that copies only the items a transaction names; Query from the partition asked
for, with moto's order, conditions, pages and filters; GetObject ranges read alone."""

import os
import unittest
import uuid

from botocore.exceptions import ClientError

from standin_fixture import StandInTestCase, create_table


class TransactionTest(StandInTestCase):
    def setUp(self):
        self.db = self.client("dynamodb")
        self.table = create_table(self.db, "t-" + uuid.uuid4().hex[:8])
        # Items the transactions do not name: they must come through untouched.
        for i in range(50):
            self.db.put_item(TableName=self.table, Item={"pk": {"S": "other"}, "sk": {"S": f"{i:03d}"}, "v": {"N": str(i)}})
        self.db.put_item(TableName=self.table, Item={"pk": {"S": "a"}, "sk": {"S": "kept"}, "v": {"N": "1"}})
        self.db.put_item(TableName=self.table, Item={"pk": {"S": "a"}, "sk": {"S": "gone"}, "v": {"N": "2"}})

    def items(self):
        pages = self.db.get_paginator("scan").paginate(TableName=self.table)
        return sorted((item["pk"]["S"], item["sk"]["S"], item.get("v", {}).get("N"), item.get("w", {}).get("S"))
                      for page in pages for item in page["Items"])

    def actions(self, last):
        """A new item, an update, a delete, then `last`."""
        return [
            {"Put": {"TableName": self.table, "Item": {"pk": {"S": "a"}, "sk": {"S": "new"}, "v": {"N": "3"}}}},
            {"Update": {"TableName": self.table, "Key": {"pk": {"S": "a"}, "sk": {"S": "kept"}},
                        "UpdateExpression": "SET v = v + :one, w = :w",
                        "ExpressionAttributeValues": {":one": {"N": "1"}, ":w": {"S": "written"}}}},
            {"Delete": {"TableName": self.table, "Key": {"pk": {"S": "a"}, "sk": {"S": "gone"}}}},
            last,
        ]

    def test_a_failed_condition_leaves_every_item_as_it_was(self):
        before = self.items()
        failing = {"ConditionCheck": {"TableName": self.table, "Key": {"pk": {"S": "other"}, "sk": {"S": "000"}},
                                      "ConditionExpression": "v = :nine",
                                      "ExpressionAttributeValues": {":nine": {"N": "9"}}}}
        with self.assertRaises(ClientError) as raised:
            self.db.transact_write_items(TransactItems=self.actions(failing))
        self.assertEqual(raised.exception.response["Error"]["Code"], "TransactionCanceledException")
        reasons = [reason["Code"] for reason in raised.exception.response["CancellationReasons"]]
        self.assertEqual(reasons, ["None", "None", "None", "ConditionalCheckFailed"])
        self.assertEqual(self.items(), before)

    def test_an_invalid_action_leaves_every_item_as_it_was(self):
        before = self.items()
        # The same item twice in one transaction: refused as a whole.
        twice = {"Put": {"TableName": self.table, "Item": {"pk": {"S": "a"}, "sk": {"S": "new"}, "v": {"N": "4"}}}}
        with self.assertRaises(ClientError) as raised:
            self.db.transact_write_items(TransactItems=self.actions(twice))
        self.assertEqual(raised.exception.response["Error"]["Code"], "ValidationException")
        self.assertEqual(self.items(), before)

    def test_a_transaction_that_passes_applies_every_action(self):
        passing = {"ConditionCheck": {"TableName": self.table, "Key": {"pk": {"S": "other"}, "sk": {"S": "000"}},
                                      "ConditionExpression": "v = :zero",
                                      "ExpressionAttributeValues": {":zero": {"N": "0"}}}}
        self.db.transact_write_items(TransactItems=self.actions(passing))
        after = [item for item in self.items() if item[0] == "a"]
        self.assertEqual(after, [("a", "kept", "2", "written"), ("a", "new", "3", None)])
        self.assertEqual(len(self.items()), 52)

    def test_a_table_without_a_sort_key_rolls_back_too(self):
        table = create_table(self.db, "h-" + uuid.uuid4().hex[:8], sort_key=False)
        self.db.put_item(TableName=table, Item={"pk": {"S": "x"}, "v": {"N": "1"}})
        with self.assertRaises(ClientError):
            self.db.transact_write_items(TransactItems=[
                {"Put": {"TableName": table, "Item": {"pk": {"S": "y"}}}},
                {"Update": {"TableName": table, "Key": {"pk": {"S": "x"}}, "UpdateExpression": "SET v = :two",
                            "ExpressionAttributeValues": {":two": {"N": "2"}}}},
                {"ConditionCheck": {"TableName": table, "Key": {"pk": {"S": "z"}},
                                    "ConditionExpression": "attribute_exists(pk)"}},
            ])
        items = self.db.scan(TableName=table)["Items"]
        self.assertEqual(items, [{"pk": {"S": "x"}, "v": {"N": "1"}}])


class QueryTest(StandInTestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.db = cls.client(cls, "dynamodb")
        cls.table = "q-" + uuid.uuid4().hex[:8]
        cls.db.create_table(
            TableName=cls.table, BillingMode="PAY_PER_REQUEST",
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
            AttributeDefinitions=[{"AttributeName": name, "AttributeType": "S"} for name in ("pk", "sk", "due", "at")],
            GlobalSecondaryIndexes=[{"IndexName": "due", "Projection": {"ProjectionType": "KEYS_ONLY"},
                                     "KeySchema": [{"AttributeName": "due", "KeyType": "HASH"},
                                                   {"AttributeName": "at", "KeyType": "RANGE"}]}])
        # Three partitions of 30; every third item of partition p1 is in the sparse index.
        for partition in ("p0", "p1", "p2"):
            for i in range(30):
                item = {"pk": {"S": partition}, "sk": {"S": f"{i:03d}"}, "n": {"N": str(i)}}
                if partition == "p1" and i % 3 == 0:
                    item.update({"due": {"S": "yes"}, "at": {"S": f"{100 - i:03d}"}})
                cls.db.put_item(TableName=cls.table, Item=item)

    def query_all(self, **request):
        """Every page's keys, with Limit 7 to make several pages."""
        keys, start = [], None
        while True:
            page = self.db.query(TableName=self.table, Limit=7, **request, **({"ExclusiveStartKey": start} if start else {}))
            keys += [(item["pk"]["S"], item["sk"]["S"]) for item in page["Items"]]
            start = page.get("LastEvaluatedKey")
            if not start:
                return keys

    def test_a_query_reads_its_partition_in_order_across_pages(self):
        keys = self.query_all(KeyConditionExpression="pk = :p", ExpressionAttributeValues={":p": {"S": "p1"}})
        self.assertEqual(keys, [("p1", f"{i:03d}") for i in range(30)])

    def test_a_query_with_a_sort_key_condition_backwards_and_a_filter(self):
        keys = self.query_all(KeyConditionExpression="pk = :p AND begins_with(sk, :one)",
                              FilterExpression="n > :ten", ScanIndexForward=False,
                              ExpressionAttributeValues={":p": {"S": "p2"}, ":one": {"S": "01"}, ":ten": {"N": "12"}})
        self.assertEqual(keys, [("p2", f"{i:03d}") for i in range(19, 12, -1)])

    def test_a_query_with_between_and_greater_than_across_pages(self):
        keys = self.query_all(KeyConditionExpression="pk = :p AND sk BETWEEN :low AND :high",
                              ExpressionAttributeValues={":p": {"S": "p0"}, ":low": {"S": "004"}, ":high": {"S": "021"}})
        self.assertEqual(keys, [("p0", f"{i:03d}") for i in range(4, 22)])
        keys = self.query_all(KeyConditionExpression="pk = :p AND sk > :last",
                              ExpressionAttributeValues={":p": {"S": "p0"}, ":last": {"S": "025"}})
        self.assertEqual(keys, [("p0", f"{i:03d}") for i in range(26, 30)])

    def test_a_query_of_a_missing_partition_is_empty(self):
        page = self.db.query(TableName=self.table, KeyConditionExpression="pk = :p",
                             ExpressionAttributeValues={":p": {"S": "nowhere"}})
        self.assertEqual((page["Items"], page["Count"]), ([], 0))

    def test_a_query_of_a_sparse_index_reads_only_its_items_in_index_order(self):
        keys = self.query_all(IndexName="due", KeyConditionExpression="#due = :yes AND #at < :ninety",
                              ExpressionAttributeNames={"#due": "due", "#at": "at"},
                              ExpressionAttributeValues={":yes": {"S": "yes"}, ":ninety": {"S": "090"}})
        # `at` is 100 - i: ascending `at` is descending i, and at < 090 keeps i > 10.
        self.assertEqual(keys, [("p1", f"{i:03d}") for i in range(27, 10, -3)])


class ObjectRangeTest(StandInTestCase):
    def setUp(self):
        self.s3 = self.client("s3")
        self.bucket = "b-" + uuid.uuid4().hex[:8]
        self.s3.create_bucket(Bucket=self.bucket)
        # Past moto's in-memory size for an object's buffer (it spools to disk beyond it).
        self.body = os.urandom(12 * 1024 * 1024 + 5)
        self.s3.put_object(Bucket=self.bucket, Key="k", Body=self.body)

    def get(self, **request):
        return self.s3.get_object(Bucket=self.bucket, Key="k", **request)

    def test_ranges_put_together_are_the_object(self):
        step = 4 * 1024 * 1024
        parts = []
        for start in range(0, len(self.body), step):
            end = min(start + step, len(self.body)) - 1
            got = self.get(Range=f"bytes={start}-{end}")
            self.assertEqual(got["ResponseMetadata"]["HTTPStatusCode"], 206)
            self.assertEqual(got["ContentRange"], f"bytes {start}-{end}/{len(self.body)}")
            parts.append(got["Body"].read())
        self.assertEqual(b"".join(parts), self.body)

    def test_an_open_range_a_range_past_the_end_and_the_whole_object(self):
        self.assertEqual(self.get(Range="bytes=12582910-")["Body"].read(), self.body[12582910:])
        self.assertEqual(self.get(Range="bytes=10-99999999")["Body"].read(), self.body[10:])
        self.assertEqual(self.get(Range="bytes=-7")["Body"].read(), self.body[-7:])
        self.assertEqual(self.get()["Body"].read(), self.body)
        self.assertEqual(self.get(PartNumber=1)["Body"].read(), self.body)
        with self.assertRaises(ClientError) as raised:
            self.get(Range=f"bytes={len(self.body)}-")
        self.assertEqual(raised.exception.response["Error"]["Code"], "InvalidRange")

    def test_a_range_with_the_objects_etag_and_another(self):
        etag = self.s3.head_object(Bucket=self.bucket, Key="k")["ETag"]
        self.assertEqual(self.get(Range="bytes=0-9", IfMatch=etag)["Body"].read(), self.body[:10])
        with self.assertRaises(ClientError) as raised:
            self.get(Range="bytes=0-9", IfMatch='"0123456789abcdef0123456789abcdef"')
        self.assertEqual(raised.exception.response["Error"]["Code"], "PreconditionFailed")


if __name__ == "__main__":
    unittest.main()
