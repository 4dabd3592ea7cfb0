"""AWS's limits in the stand-in (tests/standin/limits.py, and what moto refuses itself): each
test makes AWS's refusal happen, with AWS's error code and message, and shows a request
just at the limit accepted."""

import unittest
import urllib.error
import urllib.parse
import urllib.request
import uuid

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

from standin_fixture import StandInTestCase, create_table

KEY_MESSAGE = "One or more parameter values were invalid: Size of hashkey has exceeded the maximum size limit of2048 bytes"
SORT_KEY_MESSAGE = ("One or more parameter values were invalid: Aggregated size of all range keys has exceeded the "
                    "size limit of 1024 bytes")
ITEM_MESSAGE = "Item size has exceeded the maximum allowed size"
UPDATE_MESSAGE = "Item size to update has exceeded the maximum allowed size"
KB = 1024
MIB = 1024 * 1024


def text(size, unit="x"):
    """A string of `size` UTF-8 bytes, of two-byte characters where `unit` is one."""
    width = len(unit.encode())
    return unit * (size // width) + "x" * (size % width)


class LimitsTestCase(StandInTestCase):
    def refused(self, call, code, message=None):
        """Calls `call`, which must fail with `code` (and `message`); returns the error."""
        with self.assertRaises(ClientError) as raised:
            call()
        error = raised.exception.response["Error"]
        self.assertEqual(error["Code"], code, error)
        if message is not None:
            self.assertEqual(error["Message"], message)
        return raised.exception.response


class DynamoDBLimitsTest(LimitsTestCase):
    def setUp(self):
        self.db = self.client("dynamodb")
        self.table = create_table(self.db, "t-" + uuid.uuid4().hex[:8])

    def item(self, pk, sk="s", size=None, **attributes):
        """An item; with `size`, a `fill` attribute makes it `size` bytes in all."""
        item = {"pk": {"S": pk}, "sk": {"S": sk}}
        item.update({name: {"S": value} for name, value in attributes.items()})
        if size is not None:
            used = sum(len(name.encode()) + len(value["S"].encode()) for name, value in item.items())
            item["fill"] = {"S": "x" * (size - used - len("fill"))}
        return item

    def every_call_with_key(self, key):
        """Every call that takes `key` (a key of this table), by name."""
        t, values = self.table, {":v": {"S": "v"}}
        condition = {":p": key["pk"], ":s": key["sk"]}
        return {
            "GetItem": lambda: self.db.get_item(TableName=t, Key=key),
            "PutItem": lambda: self.db.put_item(TableName=t, Item=key),
            "UpdateItem": lambda: self.db.update_item(TableName=t, Key=key, UpdateExpression="SET v = :v",
                                                      ExpressionAttributeValues=values),
            # A condition that fails: the key is refused before it is evaluated.
            "UpdateItem with a condition": lambda: self.db.update_item(
                TableName=t, Key=key, UpdateExpression="SET v = :v", ConditionExpression="attribute_exists(v)",
                ExpressionAttributeValues=values),
            "DeleteItem": lambda: self.db.delete_item(TableName=t, Key=key),
            "BatchGetItem": lambda: self.db.batch_get_item(RequestItems={t: {"Keys": [key]}}),
            "BatchWriteItem put": lambda: self.db.batch_write_item(RequestItems={t: [{"PutRequest": {"Item": key}}]}),
            "BatchWriteItem delete": lambda: self.db.batch_write_item(
                RequestItems={t: [{"DeleteRequest": {"Key": key}}]}),
            "TransactWriteItems Put": lambda: self.db.transact_write_items(
                TransactItems=[{"Put": {"TableName": t, "Item": key}}]),
            "TransactWriteItems Update": lambda: self.db.transact_write_items(TransactItems=[
                {"Update": {"TableName": t, "Key": key, "UpdateExpression": "SET v = :v",
                            "ExpressionAttributeValues": values}}]),
            "TransactWriteItems Delete": lambda: self.db.transact_write_items(
                TransactItems=[{"Delete": {"TableName": t, "Key": key}}]),
            "TransactWriteItems ConditionCheck": lambda: self.db.transact_write_items(TransactItems=[
                {"ConditionCheck": {"TableName": t, "Key": key, "ConditionExpression": "attribute_not_exists(pk)"}}]),
            "TransactGetItems": lambda: self.db.transact_get_items(
                TransactItems=[{"Get": {"TableName": t, "Key": key}}]),
            "Query": lambda: self.db.query(TableName=t, KeyConditionExpression="pk = :p AND sk = :s",
                                           ExpressionAttributeValues=condition),
            "Query, sort key condition": lambda: self.db.query(
                TableName=t, KeyConditionExpression="pk = :p AND begins_with(sk, :s)",
                ExpressionAttributeValues=condition),
        }

    def check_key_limit(self, at_limit, over_limit, message):
        for name, call in self.every_call_with_key(at_limit).items():
            with self.subTest(call=name, key="at the limit"):
                call()
        for name, call in self.every_call_with_key(over_limit).items():
            with self.subTest(call=name, key="over the limit"):
                self.refused(call, "ValidationException", message)

    def test_partition_key_value_at_most_2048_bytes(self):
        # Bytes, not characters: 1,024 two-byte characters are the limit.
        self.check_key_limit(self.item(text(2048, "é")), self.item(text(2049, "é")), KEY_MESSAGE)

    def test_sort_key_value_at_most_1024_bytes(self):
        self.check_key_limit(self.item("p", text(1024, "é")), self.item("p", text(1025, "é")), SORT_KEY_MESSAGE)

    def get(self, pk):
        return self.db.get_item(TableName=self.table, Key={"pk": {"S": pk}, "sk": {"S": "s"}}).get("Item")

    def test_item_at_most_400_kb(self):
        t, limit = self.table, 400 * KB
        # PutItem.
        at_limit = self.item("put", size=limit)
        self.db.put_item(TableName=t, Item=at_limit)
        self.refused(lambda: self.db.put_item(TableName=t, Item=self.item("put", size=limit + 1)),
                     "ValidationException", ITEM_MESSAGE)
        self.assertEqual(self.get("put"), at_limit)

        # UpdateItem: the item it would make (replacing an attribute counts its new value
        # only). A refused update changes nothing, and makes no item.
        key = {"pk": {"S": "update"}, "sk": {"S": "s"}}
        self.db.put_item(TableName=t, Item=self.item("update", v="1"))
        filler = limit - len("pk" "update" "sk" "s" "v" "1" "fill")
        for value in ("y" * filler, "x" * filler):
            self.db.update_item(TableName=t, Key=key, UpdateExpression="SET fill = :d",
                                ExpressionAttributeValues={":d": {"S": value}})
        for pk, value in (("update", "x" * (filler + 1)), ("new", "x" * limit)):
            self.refused(lambda: self.db.update_item(
                TableName=t, Key={"pk": {"S": pk}, "sk": {"S": "s"}}, UpdateExpression="SET v = :v, fill = :d",
                ExpressionAttributeValues={":v": {"S": "2"}, ":d": {"S": value}}), "ValidationException", UPDATE_MESSAGE)
        self.assertEqual(self.get("update"), self.item("update", v="1", fill="x" * filler))
        self.assertIsNone(self.get("new"))

        # BatchWriteItem: refused whole, before any of it is written.
        self.db.batch_write_item(RequestItems={t: [{"PutRequest": {"Item": self.item("batch", size=limit)}}]})
        self.refused(lambda: self.db.batch_write_item(RequestItems={t: [
            {"PutRequest": {"Item": self.item("first")}},
            {"PutRequest": {"Item": self.item("batch", size=limit + 1)}}]}), "ValidationException", ITEM_MESSAGE)
        self.assertIsNone(self.get("first"))

        # TransactWriteItems: a Put too large is refused; an Update that makes an item too
        # large cancels the transaction, with the reason at its place.
        self.db.transact_write_items(TransactItems=[{"Put": {"TableName": t, "Item": self.item("tx", size=limit)}}])
        self.refused(lambda: self.db.transact_write_items(
            TransactItems=[{"Put": {"TableName": t, "Item": self.item("tx", size=limit + 1)}}]),
            "ValidationException", ITEM_MESSAGE)
        update = {"TableName": t, "Key": key, "UpdateExpression": "SET fill = :d",
                  "ExpressionAttributeValues": {":d": {"S": "z" * filler}}}
        put = {"Put": {"TableName": t, "Item": self.item("other")}}
        self.db.transact_write_items(TransactItems=[put, {"Update": update}])
        update["ExpressionAttributeValues"] = {":d": {"S": "w" * (filler + 1)}}
        response = self.refused(lambda: self.db.transact_write_items(TransactItems=[put, {"Update": update}]),
                                "TransactionCanceledException")
        self.assertEqual(response["CancellationReasons"],
                         [{"Code": "None"}, {"Code": "ValidationError", "Message": UPDATE_MESSAGE}])
        self.assertEqual(self.get("update"), self.item("update", v="1", fill="z" * filler))

    def test_transact_write_items_at_most_100_actions(self):
        def puts(count):
            return [{"Put": {"TableName": self.table, "Item": self.item(f"p{i}")}} for i in range(count)]

        self.db.transact_write_items(TransactItems=puts(100))
        response = self.refused(lambda: self.db.transact_write_items(TransactItems=puts(101)), "ValidationException")
        self.assertIn("Member must have length less than or equal to 100", response["Error"]["Message"])

    def test_transact_write_items_at_most_4_mb(self):
        def puts(last):
            # Ten items of 400 KB and one of `last` bytes.
            return [{"Put": {"TableName": self.table, "Item": self.item(f"p{i}", size=400 * KB)}} for i in range(10)] + [
                {"Put": {"TableName": self.table, "Item": self.item("last", size=last)}}]

        self.db.transact_write_items(TransactItems=puts(4 * MIB - 4_096_000))
        self.refused(lambda: self.db.transact_write_items(TransactItems=puts(4 * MIB - 4_096_000 + 1)),
                     "ValidationException")
        self.assertIsNotNone(self.get("last"))

    def test_transact_get_items_at_most_100(self):
        def gets(count):
            return [{"Get": {"TableName": self.table, "Key": self.item(f"p{i}")}} for i in range(count)]

        self.assertEqual(len(self.db.transact_get_items(TransactItems=gets(100))["Responses"]), 100)
        response = self.refused(lambda: self.db.transact_get_items(TransactItems=gets(101)), "ValidationException")
        self.assertIn("Member must have length less than or equal to 100", response["Error"]["Message"])

    def test_batch_get_item_at_most_100_keys(self):
        other = create_table(self.db, self.table + "-2", sort_key=False)

        def keys(count, table_keys=None):
            return {self.table: {"Keys": [self.item(f"p{i}") for i in range(count)]},
                    other: {"Keys": [{"pk": {"S": f"p{i}"}} for i in range(table_keys or 0)]}}

        self.db.batch_get_item(RequestItems=keys(60, 40))
        self.refused(lambda: self.db.batch_get_item(RequestItems=keys(60, 41)), "ValidationException",
                     "Too many items requested for the BatchGetItem call")
        response = self.refused(lambda: self.db.batch_get_item(RequestItems={self.table: keys(101)[self.table]}),
                                "ValidationException")
        self.assertIn("Member must have length less than or equal to 100", response["Error"]["Message"])

    def test_batch_write_item_at_most_25_requests(self):
        other = create_table(self.db, self.table + "-2", sort_key=False)

        def puts(count, prefix="p"):
            return [{"PutRequest": {"Item": self.item(f"{prefix}{i}")}} for i in range(count)]

        self.db.batch_write_item(RequestItems={self.table: puts(25)})
        self.db.batch_write_item(RequestItems={self.table: puts(15), other: [
            {"PutRequest": {"Item": {"pk": {"S": f"o{i}"}}}} for i in range(10)]})
        response = self.refused(lambda: self.db.batch_write_item(RequestItems={self.table: puts(26, "q")}),
                                "ValidationException")
        self.assertIn("Member must have length less than or equal to 25", response["Error"]["Message"])
        self.refused(lambda: self.db.batch_write_item(RequestItems={self.table: puts(15, "q"), other: [
            {"PutRequest": {"Item": {"pk": {"S": f"q{i}"}}}} for i in range(11)]}), "ValidationException",
            "Too many items requested for the BatchWriteItem call")
        self.assertIsNone(self.get("q0"))


class SQSLimitsTest(LimitsTestCase):
    """Through boto3, which speaks SQS's JSON protocol, as Gantry's SDK does."""

    def setUp(self):
        self.sqs = self.client("sqs")
        name = "q-" + uuid.uuid4().hex[:8]
        self.queue = self.sqs.create_queue(QueueName=name)["QueueUrl"]
        self.small_queue = self.sqs.create_queue(QueueName=name + "-256k",
                                                 Attributes={"MaximumMessageSize": str(256 * KB)})["QueueUrl"]

    def test_message_at_most_the_queues_maximum_size(self):
        attribute = {"n": {"DataType": "String", "StringValue": "v"}}  # 1 + 6 + 1 bytes
        for queue, limit in ((self.queue, MIB), (self.small_queue, 256 * KB)):
            message = f"One or more parameters are invalid. Reason: Message must be shorter than {limit} bytes."
            with self.subTest(limit=limit):
                self.sqs.send_message(QueueUrl=queue, MessageBody=text(limit, "é"))
                self.refused(lambda: self.sqs.send_message(QueueUrl=queue, MessageBody=text(limit + 1, "é")),
                             "InvalidParameterValue", message)
                # The attributes count: name, type and value.
                self.sqs.send_message(QueueUrl=queue, MessageBody=text(limit - 8), MessageAttributes=attribute)
                self.refused(lambda: self.sqs.send_message(QueueUrl=queue, MessageBody=text(limit - 7),
                                                           MessageAttributes=attribute),
                             "InvalidParameterValue", message)
        # In a batch, each message is held to its queue's limit (the batch's own 1 MiB aside).
        self.sqs.send_message_batch(QueueUrl=self.small_queue, Entries=[{"Id": "a", "MessageBody": text(256 * KB)}])
        self.refused(lambda: self.sqs.send_message_batch(
            QueueUrl=self.small_queue, Entries=[{"Id": "a", "MessageBody": text(256 * KB + 1)}]),
            "InvalidParameterValue",
            "One or more parameters are invalid. Reason: Message must be shorter than 262144 bytes.")

    def test_batches_at_most_10_entries(self):
        def entries(count, **entry):
            return [dict(entry, Id=str(i)) for i in range(count)]

        message = "Maximum number of entries per request are 10. You have sent 11."
        code = "AWS.SimpleQueueService.TooManyEntriesInBatchRequest"
        self.assertEqual(len(self.sqs.send_message_batch(QueueUrl=self.queue,
                                                         Entries=entries(10, MessageBody="x"))["Successful"]), 10)
        self.refused(lambda: self.sqs.send_message_batch(QueueUrl=self.queue, Entries=entries(11, MessageBody="x")),
                     code, message)
        handles = [m["ReceiptHandle"] for m in self.sqs.receive_message(QueueUrl=self.queue, MaxNumberOfMessages=10,
                                                                        VisibilityTimeout=60)["Messages"]]
        self.assertEqual(len(handles), 10)
        change = [{"Id": str(i), "ReceiptHandle": h, "VisibilityTimeout": 60} for i, h in enumerate(handles)]
        self.assertEqual(len(self.sqs.change_message_visibility_batch(QueueUrl=self.queue,
                                                                      Entries=change)["Successful"]), 10)
        self.refused(lambda: self.sqs.change_message_visibility_batch(
            QueueUrl=self.queue, Entries=change + [dict(change[0], Id="10")]), code, message)
        delete = [{"Id": str(i), "ReceiptHandle": h} for i, h in enumerate(handles)]
        self.refused(lambda: self.sqs.delete_message_batch(
            QueueUrl=self.queue, Entries=delete + [{"Id": "10", "ReceiptHandle": "another"}]), code, message)
        self.assertEqual(len(self.sqs.delete_message_batch(QueueUrl=self.queue, Entries=delete)["Successful"]), 10)

    def test_batch_at_most_1_mib_in_all(self):
        attribute = {"n": {"DataType": "String", "StringValue": "v"}}

        def batch(last):
            return [{"Id": "a", "MessageBody": text(MIB // 2, "é")},
                    {"Id": "b", "MessageBody": text(last), "MessageAttributes": attribute}]

        self.sqs.send_message_batch(QueueUrl=self.queue, Entries=batch(MIB // 2 - 8))
        self.refused(lambda: self.sqs.send_message_batch(QueueUrl=self.queue, Entries=batch(MIB // 2 - 7)),
                     "AWS.SimpleQueueService.BatchRequestTooLong",
                     f"Batch requests cannot be longer than {MIB} bytes. You have sent {MIB + 1} bytes.")

    def test_delay_seconds_0_to_900(self):
        for delay in (0, 900):
            self.sqs.send_message(QueueUrl=self.queue, MessageBody="x", DelaySeconds=delay)
        for delay in (-1, 901):
            message = f"Value {delay} for parameter DelaySeconds is invalid. Reason: DelaySeconds must be >= 0 and <= 900."
            with self.subTest(delay=delay):
                self.refused(lambda: self.sqs.send_message(QueueUrl=self.queue, MessageBody="x", DelaySeconds=delay),
                             "InvalidParameterValue", message)
                # In a batch, the entry fails.
                sent = self.sqs.send_message_batch(QueueUrl=self.queue, Entries=[
                    {"Id": "good", "MessageBody": "x", "DelaySeconds": 900},
                    {"Id": "bad", "MessageBody": "x", "DelaySeconds": delay}])
                self.assertEqual([entry["Id"] for entry in sent["Successful"]], ["good"])
                self.assertEqual([(e["Id"], e["Code"], e["Message"]) for e in sent["Failed"]],
                                 [("bad", "InvalidParameterValue", message)])

    def test_receive_wait_time_seconds_0_to_20(self):
        self.sqs.send_message(QueueUrl=self.queue, MessageBody="x")
        for wait in (0, 20):
            self.sqs.receive_message(QueueUrl=self.queue, WaitTimeSeconds=wait, VisibilityTimeout=0)
        for wait in (-1, 21):
            with self.subTest(wait=wait):
                self.refused(lambda: self.sqs.receive_message(QueueUrl=self.queue, WaitTimeSeconds=wait),
                             "InvalidParameterValue",
                             f"Value {wait} for parameter WaitTimeSeconds is invalid. Reason: Must be >= 0 and <= 20, "
                             "if provided.")

    def test_receive_max_number_of_messages_1_to_10(self):
        self.sqs.send_message_batch(QueueUrl=self.queue, Entries=[{"Id": str(i), "MessageBody": "x"} for i in range(10)])
        self.assertEqual(len(self.sqs.receive_message(QueueUrl=self.queue, MaxNumberOfMessages=1,
                                                      VisibilityTimeout=0)["Messages"]), 1)
        self.assertEqual(len(self.sqs.receive_message(QueueUrl=self.queue, MaxNumberOfMessages=10)["Messages"]), 10)
        for count in (0, 11):
            with self.subTest(count=count):
                self.refused(lambda: self.sqs.receive_message(QueueUrl=self.queue, MaxNumberOfMessages=count),
                             "InvalidParameterValue",
                             f"Value {count} for parameter MaxNumberOfMessages is invalid. Reason: Must be between 1 "
                             "and 10, if provided.")


class SQSQueryProtocolLimitsTest(LimitsTestCase):
    """The same limits over SQS's query protocol (form-encoded requests, XML answers)."""

    def query(self, action, **params):
        """Sends a signed query request; returns (HTTP status, the error's code or None)."""
        body = urllib.parse.urlencode(dict(params, Action=action, Version="2012-11-05"))
        request = AWSRequest(method="POST", url=self.endpoint + "/", data=body,
                             headers={"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"})
        SigV4Auth(Credentials("testing", "testing"), "sqs", "us-east-1").add_auth(request)
        sent = urllib.request.Request(request.url, data=body.encode(), headers=dict(request.headers.items()),
                                      method="POST")
        try:
            with urllib.request.urlopen(sent) as response:
                return response.status, None
        except urllib.error.HTTPError as error:
            answer = error.read().decode()
            return error.code, answer.split("<Code>")[1].split("</Code>")[0]

    def test_limits_hold_over_the_query_protocol(self):
        queue = self.client("sqs").create_queue(QueueName="q-" + uuid.uuid4().hex[:8])["QueueUrl"]

        def batch(count):
            entries = {}
            for i in range(1, count + 1):
                entries[f"SendMessageBatchRequestEntry.{i}.Id"] = str(i)
                entries[f"SendMessageBatchRequestEntry.{i}.MessageBody"] = "x"
            return entries

        attribute = {"MessageAttribute.1.Name": "n", "MessageAttribute.1.Value.DataType": "String",
                     "MessageAttribute.1.Value.StringValue": "v"}
        cases = [
            ("SendMessageBatch", batch(10), batch(11), "AWS.SimpleQueueService.TooManyEntriesInBatchRequest"),
            ("SendMessage", dict(attribute, MessageBody=text(MIB - 8, "é")),
             dict(attribute, MessageBody=text(MIB - 7, "é")), "InvalidParameterValue"),
            ("SendMessage", {"MessageBody": "x", "DelaySeconds": "0"}, {"MessageBody": "x", "DelaySeconds": "-1"},
             "InvalidParameterValue"),
            ("ReceiveMessage", {"MaxNumberOfMessages": "10", "VisibilityTimeout": "0"}, {"MaxNumberOfMessages": "11"},
             "InvalidParameterValue"),
            ("ReceiveMessage", {"WaitTimeSeconds": "20", "VisibilityTimeout": "0"}, {"WaitTimeSeconds": "21"},
             "InvalidParameterValue"),
        ]
        for action, at_limit, over_limit, code in cases:
            with self.subTest(action=action, refused=code):
                self.assertEqual(self.query(action, QueueUrl=queue, **at_limit), (200, None))
                self.assertEqual(self.query(action, QueueUrl=queue, **over_limit), (400, code))


class SNSLimitsTest(LimitsTestCase):
    def test_publish_at_most_the_topics_maximum_size(self):
        sns = self.client("sns")
        name = "t-" + uuid.uuid4().hex[:8]
        topic = sns.create_topic(Name=name)["TopicArn"]
        large = sns.create_topic(Name=name + "-large", Attributes={"MaximumMessageSize": str(MIB)})["TopicArn"]
        attribute = {"n": {"DataType": "String", "StringValue": "v"}}
        for arn, limit in ((topic, 256 * KB), (large, MIB)):
            with self.subTest(limit=limit):
                # Bytes, not characters; the attributes count.
                sns.publish(TopicArn=arn, Message=text(limit, "é"))
                self.refused(lambda: sns.publish(TopicArn=arn, Message=text(limit + 1, "é")), "InvalidParameter",
                             "Invalid parameter: Message too long")
                sns.publish(TopicArn=arn, Message=text(limit - 8), MessageAttributes=attribute)
                self.refused(lambda: sns.publish(TopicArn=arn, Message=text(limit - 7), MessageAttributes=attribute),
                             "InvalidParameter", "Invalid parameter: Message too long")


if __name__ == "__main__":
    unittest.main()
