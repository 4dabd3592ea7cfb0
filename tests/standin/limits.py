"""AWS's size and count limits on the calls Gantry makes, where moto 5.2 lets them pass.

Every refusal keeps AWS's error code and, where known, its message. What moto already
refuses as AWS does is left to moto (tests/test_limits.py tests every limit either way).

DynamoDB
- Key values: partition key at most 2,048 bytes, sort key at most 1,024 (ValidationException,
  moto's messages, which are AWS's) on every call that takes a key: moto checked only the
  items written; here GetItem, BatchGetItem, TransactGetItems, DeleteItem, UpdateItem,
  TransactWriteItems' Update, Delete and ConditionCheck, and Query's key conditions on the
  table's key check them too, before any condition is evaluated.
- Item size at most 400 KB, which DynamoDB counts as 409,600 bytes (moto refused from
  405,001, and counted a replaced attribute twice). A too large UpdateItem no longer leaves
  half its actions applied, or a new item holding only its key. In TransactWriteItems an
  Update that makes an item too large cancels the transaction (TransactionCanceledException,
  reason ValidationError), as AWS documents; a Put too large is refused outright.
- BatchWriteItem: at most 25 requests, and the whole batch is checked (keys, item sizes)
  before anything is written (moto wrote the requests before a bad one).
- TransactWriteItems: at most 4 MB in all; TransactGetItems: at most 100 items (moto: 25).
SQS (both protocols moto reads: JSON, as the SDKs use, and query)
- A message's size is its body's UTF-8 bytes plus each attribute's name, type and value
  (moto counted characters of the body only), at most the queue's MaximumMessageSize
  (default and maximum 1 MiB, since AWS raised it from 256 KiB in 2025); a batch's at most
  1 MiB in all; DelaySeconds 0..900 (moto took negative values); DeleteMessageBatch and
  ChangeMessageVisibilityBatch at most 10 entries; ReceiveMessage's refusals with AWS's text.
SNS
- Publish: body and attributes at most the topic's MaximumMessageSize (default 256 KiB,
  up to 1 MiB), counted in bytes (moto counted characters of the body only).

Left out: sizes are measured as moto measures them (names and strings in UTF-8 bytes,
binaries in bytes, numbers by their digits), not by DynamoDB's exact accounting (a number
takes about one byte per two digits, lists and maps a few bytes more); secondary index keys
keep moto's messages; the 4 MB of a transaction counts what its Puts write and the size of
the items its other actions touch now, not what an Update will make of them; the 16 MB of a
BatchWriteItem request; the message text of the 4 MB refusal, which AWS does not document;
PublishBatch and SQS FIFO specifics.
"""

import copy
import threading

from moto.dynamodb import responses as dynamodb_responses
from moto.dynamodb.exceptions import ItemSizeTooLarge, ItemSizeToUpdateTooLarge, MockValidationException
from moto.dynamodb.models import DynamoDBBackend
from moto.dynamodb.models.dynamo_type import DynamoType, LimitedSizeDict
from moto.dynamodb.models.utilities import bytesize
from moto.dynamodb.responses import DynamoHandler
from .scale import put_back

# Constraints in Amazon DynamoDB, "Partition keys and sort keys" and "Items"
# (https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/Constraints.html): a
# partition key value is 1 to 2,048 bytes, a sort key value 1 to 1,024 (moto.dynamodb.limits
# holds both, and its HashKeyTooLong and RangeKeyTooLong carry AWS's messages); an item is at
# most 400 KB, names and values together, where "1 KB = 1024 bytes".
ITEM_BYTES = 400 * 1024

# BatchWriteItem - Amazon DynamoDB
# (https://docs.aws.amazon.com/amazondynamodb/latest/APIReference/API_BatchWriteItem.html):
# "up to 25 item put or delete operations"; the whole request is rejected when there are more
# than 25 requests or any item exceeds 400 KB.
BATCH_WRITE_REQUESTS = 25

# TransactWriteItems - Amazon DynamoDB
# (https://docs.aws.amazon.com/amazondynamodb/latest/APIReference/API_TransactWriteItems.html):
# up to 100 actions (moto refuses more), "The aggregate size of the items in the transaction
# cannot exceed 4 MB"; an item that becomes larger than 400 KB through the transaction cancels
# it. TransactGetItems - Amazon DynamoDB
# (https://docs.aws.amazon.com/amazondynamodb/latest/APIReference/API_TransactGetItems.html):
# "up to 100 TransactGetItem objects".
TRANSACTION_BYTES = 4 * 1024 * 1024
TRANSACTION_ITEMS = 100

# BatchGetItem - Amazon DynamoDB
# (https://docs.aws.amazon.com/amazondynamodb/latest/APIReference/API_BatchGetItem.html): more
# than 100 items is a ValidationException, "Too many items requested for the BatchGetItem
# call". moto refuses it already, with that message.

# Amazon SQS message quotas
# (https://docs.aws.amazon.com/AWSSimpleQueueService/latest/SQSDeveloperGuide/quotas-messages.html)
# and SendMessageBatch - Amazon Simple Queue Service
# (https://docs.aws.amazon.com/AWSSimpleQueueService/latest/APIReference/API_SendMessageBatch.html):
# a message is at most 1 MiB (1,048,576 bytes; the queue's MaximumMessageSize, 1 KiB to
# 1 MiB, can lower it), a batch's messages at most 1 MiB together, a batch at most 10 entries.
# MessageAttributeValue - Amazon Simple Queue Service
# (https://docs.aws.amazon.com/AWSSimpleQueueService/latest/APIReference/API_MessageAttributeValue.html):
# an attribute's name, type and value are all part of the message size restriction.
SQS_BATCH_BYTES = 1024 * 1024
SQS_BATCH_ENTRIES = 10

# SendMessage - Amazon Simple Queue Service
# (https://docs.aws.amazon.com/AWSSimpleQueueService/latest/APIReference/API_SendMessage.html):
# DelaySeconds, 0 to 900.
SQS_DELAY_SECONDS = 900

# ReceiveMessage - Amazon Simple Queue Service
# (https://docs.aws.amazon.com/AWSSimpleQueueService/latest/APIReference/API_ReceiveMessage.html):
# MaxNumberOfMessages 1 to 10, WaitTimeSeconds at most 20 (moto refuses both; its text is not
# AWS's).
SQS_RECEIVE_MESSAGES = 10
SQS_WAIT_SECONDS = 20

# Publish - Amazon Simple Notification Service
# (https://docs.aws.amazon.com/sns/latest/api/API_Publish.html): "By default, a message can
# be at most 256 KiB in size (262,144 bytes, not 262,144 characters)"; the topic's
# MaximumMessageSize, up to 1 MiB, sets it, for the body and attributes together, refused
# with InvalidParameter.
SNS_MESSAGE_BYTES = 256 * 1024
SNS_TOPIC_MESSAGE_BYTES = 1024 * 1024

_transaction = threading.local()


class ValidationError(Exception):
    """An action's cancellation reason in a TransactWriteItems: moto's transaction names
    the reason after the exception's class."""


def _size(value):
    return value.size() if isinstance(value, DynamoType) else bytesize(str(value))


def item_size(item):
    """An item's size (DynamoDB JSON), as moto measures it."""
    return sum(bytesize(name) + DynamoType(value).size() for name, value in item.items())


def _limited_setitem(self, name, value):
    # moto's LimitedSizeDict.__setitem__ with DynamoDB's limit, without counting the
    # value being replaced.
    rest = sum(bytesize(key) + _size(old) for key, old in self.items() if key != name)
    if rest + bytesize(name) + _size(value) > ITEM_BYTES:
        raise ItemSizeTooLarge
    dict.__setitem__(self, name, value)


def _checking_key(method):
    """A DynamoDBBackend method taking (table_name, key, ...): key sizes checked first."""

    def wrapper(self, table_name, key, *args, **kwargs):
        self.get_table(table_name)._validate_key_sizes(key)
        return method(self, table_name, key, *args, **kwargs)

    return wrapper


def _update_item(update):
    def wrapper(self, table_name, key, *args, **kwargs):
        table = self.get_table(table_name)
        try:
            hash_key, range_key = self.get_keys_value(table, key)
            before = copy.deepcopy(table.get_item(hash_key, range_key))
        except MockValidationException:  # a malformed key: moto's refusal
            return update(self, table_name, key, *args, **kwargs)
        try:
            return update(self, table_name, key, *args, **kwargs)
        except (ItemSizeTooLarge, ItemSizeToUpdateTooLarge):
            # moto applies the actions one by one, after storing a new item's key: undo both.
            put_back(table, hash_key, range_key, before)
            refused = ItemSizeToUpdateTooLarge()
            if getattr(_transaction, "active", False):
                raise ValidationError(refused.message) from None
            raise refused from None

    return _checking_key(wrapper)


def _query(query):
    def wrapper(self, table_name, *args, **kwargs):
        if kwargs.get("index_name") is None:
            table = self.get_table(table_name)
            for name, value in kwargs.get("hash_key_conditions") or []:
                table._validate_key_sizes({name: value})
            for name, _, values in kwargs.get("range_key_conditions") or []:
                for value in values:
                    table._validate_key_sizes({name: value})
        return query(self, table_name, *args, **kwargs)

    return wrapper


def _transact_write_items(transact):
    def wrapper(self, transact_items):
        _transaction.active = True
        try:
            return transact(self, transact_items)
        finally:
            _transaction.active = False

    return wrapper


def _batch_write_item(batch_write):
    def wrapper(self):
        requests = self.body["RequestItems"]
        if any(len(table_requests) > BATCH_WRITE_REQUESTS for table_requests in requests.values()):
            raise MockValidationException(
                "1 validation error detected: Value at 'requestItems' failed to satisfy constraint: Map value "
                "must satisfy constraint: [Member must have length less than or equal to 25, Member must have "
                "length greater than or equal to 1]")
        if sum(len(table_requests) for table_requests in requests.values()) > BATCH_WRITE_REQUESTS:
            raise MockValidationException("Too many items requested for the BatchWriteItem call")
        for table_name, table_requests in requests.items():
            table = self.dynamodb_backend.get_table(table_name)
            for request in table_requests:
                if "PutRequest" in request:
                    item = request["PutRequest"]["Item"]
                    table._validate_key_sizes(item)
                    if item_size(item) > ITEM_BYTES:
                        raise ItemSizeTooLarge
                elif "DeleteRequest" in request:
                    table._validate_key_sizes(request["DeleteRequest"]["Key"])
        return batch_write(self)

    return wrapper


def _transaction_size(handler):
    """The size of the items a TransactWriteItems request writes or touches. An action
    that cannot be measured (no such table, a malformed key) counts 0: moto refuses it."""
    total = 0
    for action in handler.body["TransactItems"]:
        for kind, operation in action.items():
            try:
                if kind == "Put":
                    total += item_size(operation["Item"])
                else:
                    current = handler.dynamodb_backend.get_item(operation["TableName"], operation["Key"])
                    total += current.size() if current is not None else 0
            except Exception:
                pass
    return total


def _transact_write_request(transact):
    def wrapper(self):
        actions = self.body["TransactItems"]
        # More than 100 actions: moto's refusal comes first, as AWS's validation of the list.
        if len(actions) <= TRANSACTION_ITEMS and _transaction_size(self) > TRANSACTION_BYTES:
            raise MockValidationException(
                "Transaction request size has exceeded the maximum allowed size of 4 MB")
        return transact(self)

    return wrapper


def _install_dynamodb():
    LimitedSizeDict.__setitem__ = _limited_setitem
    dynamodb_responses.TRANSACTION_MAX_ITEMS = TRANSACTION_ITEMS
    DynamoDBBackend.get_item = _checking_key(DynamoDBBackend.get_item)
    DynamoDBBackend.delete_item = _checking_key(DynamoDBBackend.delete_item)
    DynamoDBBackend.update_item = _update_item(DynamoDBBackend.update_item)
    DynamoDBBackend.query = _query(DynamoDBBackend.query)
    DynamoDBBackend.transact_write_items = _transact_write_items(DynamoDBBackend.transact_write_items)
    DynamoHandler.batch_write_item = _batch_write_item(DynamoHandler.batch_write_item)
    DynamoHandler.transact_write_items = _transact_write_request(DynamoHandler.transact_write_items)


def message_size(body, attributes):
    """A message's size in bytes: its body, and each attribute's name, type and value."""

    def length(value):
        return len(value) if isinstance(value, (bytes, bytearray)) else len(str(value).encode())

    size = length(body or "")
    for name, attribute in (attributes or {}).items():
        value = attribute.get("StringValue", attribute.get("BinaryValue", ""))
        size += length(name) + length(attribute.get("DataType", "")) + length(value)
    return size


def _install_sqs():
    from moto.sqs.exceptions import BatchRequestTooLong, InvalidParameterValue, TooManyEntriesInBatchRequest
    from moto.sqs.models import SQSBackend
    from moto.sqs.responses import SQSResponse

    def check_delay(delay):
        if delay is not None and not 0 <= int(delay) <= SQS_DELAY_SECONDS:
            raise InvalidParameterValue(
                f"Value {delay} for parameter DelaySeconds is invalid. Reason: DelaySeconds must be >= 0 and <= 900.")

    def check_size(queue, body, attributes):
        limit = int(queue.maximum_message_size)
        if message_size(body, attributes) > limit:
            raise InvalidParameterValue(
                f"One or more parameters are invalid. Reason: Message must be shorter than {limit} bytes.")

    def check_entries(response):
        entries = response._get_param("Entries", [])
        if len(entries) > SQS_BATCH_ENTRIES:
            raise TooManyEntriesInBatchRequest(len(entries))
        return entries

    send_message = SQSResponse.send_message
    send_message_batch = SQSResponse.send_message_batch
    delete_message_batch = SQSResponse.delete_message_batch
    change_message_visibility_batch = SQSResponse.change_message_visibility_batch
    receive_message = SQSResponse.receive_message
    backend_send_message = SQSBackend.send_message

    def send(self):
        queue = self.sqs_backend.get_queue(self._get_queue_name())
        check_size(queue, self._get_param("MessageBody"), self._get_param("MessageAttributes"))
        check_delay(self._get_param("DelaySeconds"))
        return send_message(self)

    def send_batch(self):
        entries = check_entries(self)
        sizes = [message_size(entry.get("MessageBody"), entry.get("MessageAttributes")) for entry in entries]
        if sum(sizes) > SQS_BATCH_BYTES:
            raise BatchRequestTooLong(sum(sizes))
        queue = self.sqs_backend.get_queue(self._get_queue_name())
        for entry in entries:
            check_size(queue, entry.get("MessageBody"), entry.get("MessageAttributes"))
        return send_message_batch(self)

    def delete_batch(self):
        check_entries(self)
        return delete_message_batch(self)

    def change_visibility_batch(self):
        check_entries(self)
        return change_message_visibility_batch(self)

    def receive(self):
        count = self._get_param("MaxNumberOfMessages")
        if count is not None and not 1 <= int(count) <= SQS_RECEIVE_MESSAGES:
            raise InvalidParameterValue(
                f"Value {count} for parameter MaxNumberOfMessages is invalid. Reason: Must be between 1 and 10, "
                "if provided.")
        wait = self._get_param("WaitTimeSeconds")
        if wait is not None and not 0 <= int(wait) <= SQS_WAIT_SECONDS:
            raise InvalidParameterValue(
                f"Value {wait} for parameter WaitTimeSeconds is invalid. Reason: Must be >= 0 and <= 20, if provided.")
        return receive_message(self)

    def backend_send(self, queue_name, message_body, *args, **kwargs):
        # A batch entry's delay is checked here, where moto makes a bad one a failed entry.
        check_delay(kwargs.get("delay_seconds"))
        return backend_send_message(self, queue_name, message_body, *args, **kwargs)

    SQSResponse.send_message = send
    SQSResponse.send_message_batch = send_batch
    SQSResponse.delete_message_batch = delete_batch
    SQSResponse.change_message_visibility_batch = change_visibility_batch
    SQSResponse.receive_message = receive
    SQSBackend.send_message = backend_send


def _install_sns():
    from moto.sns import models as sns_models
    from moto.sns.exceptions import InvalidParameterValue
    from moto.sns.responses import SNSResponse

    # moto's own check (characters, 256 KiB) would refuse what a topic of 1 MiB takes.
    sns_models.MAXIMUM_MESSAGE_LENGTH = SNS_TOPIC_MESSAGE_BYTES
    publish = SNSResponse.publish

    def checked_publish(self):
        if self._get_param("PhoneNumber") is None:
            limit = SNS_MESSAGE_BYTES
            try:
                topic = self.backend.get_topic(self._get_param("TopicArn") or self._get_param("TargetArn"))
                limit = int(getattr(topic, "maximum_message_size", None) or limit)
            except Exception:  # not a topic (a platform endpoint): the default
                pass
            if message_size(self._get_param("Message"), self._get_param("MessageAttributes")) > limit:
                raise InvalidParameterValue("Invalid parameter: Message too long")
        return publish(self)

    SNSResponse.publish = checked_publish


def install():
    _install_dynamodb()
    _install_sqs()
    _install_sns()
