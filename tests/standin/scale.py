"""DynamoDB and S3 calls whose cost follows the request, not the size of what is stored.

moto answers two of the calls Gantry makes most in time that grows with the whole table,
and DynamoDB requests are serialized (tests/moto_server.py), so at thousands of simulated
hosts every call waited on them. Measured with `make bench-scale` at 2,000 hosts:

- TransactWriteItems deep-copies every table it names, once per action, to roll back if
  an action fails: most of moto's time went to the copy, and its memory grew by about
  30 MB a second, until a 5,000-host run exhausted 24 GiB. Here a transaction copies only
  the items its actions name, and on failure puts them back as they were (or removes the
  ones it created). Either every action is applied or none is, as before
  (tests/test_scale.py).
- Query gathers and sorts every item of the table, then keeps the partition asked for,
  measuring each item of it before comparing its sort key. Here a query of the table
  starts from the items of its partition that meet its sort key condition, and a query of
  an index from the items that carry the index's partition key with the value asked for;
  moto's own query then sorts, pages, filters and projects them as before.
- A ranged GetObject reads the whole object and then slices it: fetching a 1 GB bundle in
  8 MiB ranges (as Gantry does) read it 125 times, 93 s for what one GET reads in under
  one. Here a single range (`bytes=a-b` or `bytes=a-`) reads only its bytes.
"""

import copy
import inspect
import re
import threading

from moto.dynamodb import models as dynamodb_models
from moto.dynamodb.models import DynamoDBBackend
from moto.dynamodb.models.table import Table
from moto.s3.models import FakeKey
from moto.s3.responses import S3Response


class _TablesAsTheyAre:
    """moto's `copy` module for its DynamoDB backend: a Table is "copied" as itself, so its
    rollback (`self.tables[name] = copy`) changes nothing; `put_back` undoes the actions."""

    @staticmethod
    def deepcopy(value, memo=None):
        return value if isinstance(value, Table) else copy.deepcopy(value, memo)


def put_back(table, hash_key, range_key, before):
    """Makes the item at (hash_key, range_key) what it was: `before`, or absent if None."""
    items = table.items[hash_key] if range_key is not None else table.items
    slot = range_key if range_key is not None else hash_key
    if before is None:
        items.pop(slot, None)
    else:
        items[slot] = before


def _named_items(backend, transact_items):
    """(table, hash key, range key, a copy of the item now or None) for each action whose
    item can be named; an action that cannot (no such table, a malformed key) writes
    nothing, and moto refuses it."""
    named = []
    for action in transact_items:
        for kind, operation in action.items():
            try:
                table = backend.get_table(operation["TableName"])
                key = operation["Item"] if kind == "Put" else operation["Key"]
                hash_key, range_key = backend.get_keys_value(table, key)
            except Exception:
                continue
            named.append((table, hash_key, range_key, copy.deepcopy(table.get_item(hash_key, range_key))))
    return named


def _transact_write_items(transact):
    def wrapper(self, transact_items):
        before = _named_items(self, transact_items)
        try:
            return transact(self, transact_items)
        except BaseException:
            # In reverse: an item named twice (moto refuses that) ends as it first was.
            for table, hash_key, range_key, item in reversed(before):
                put_back(table, hash_key, range_key, item)
            raise

    return wrapper


def _candidates(table, hash_key, index_name, hash_key_conditions, range_comparison, range_objs):
    """Every item the query can return (and perhaps more: moto checks each), or None to
    let moto look at the whole table."""
    if index_name is None:
        if hash_key is None:
            return None
        if table.range_key_attr is None:
            item = table.items.get(hash_key)
            return [] if item is None else [item]
        partition = table.items.get(hash_key, {})
        if not range_comparison:
            return list(partition.values())
        # moto measures every item of the partition before comparing its sort key.
        return [item for range_key, item in partition.items() if range_key.compare(range_comparison, range_objs)]
    if not hash_key_conditions:
        return None
    # A secondary index holds only the items that carry its key attributes.
    return [item for item in table.all_items_unsorted()
            if all(name in item.attrs and item.attrs[name] == value for name, value in hash_key_conditions)]


_QUERY = inspect.signature(Table.query)


def _query(query):
    def wrapper(self, *args, **kwargs):
        arguments = _QUERY.bind(self, *args, **kwargs).arguments
        candidates = _candidates(self, arguments.get("hash_key"), arguments.get("index_name"),
                                 arguments.get("hash_key_conditions"), arguments.get("range_comparison"),
                                 arguments.get("range_objs"))
        if candidates is None:
            return query(self, *args, **kwargs)
        # moto's query reads `self.all_items()`: for this call, the candidates (DynamoDB
        # requests are serialized, so no other call sees them). It sorts what it reads.
        self.all_items = lambda: candidates
        try:
            return query(self, *args, **kwargs)
        finally:
            del self.all_items

    return wrapper


def _all_items_unsorted(self):
    if self.range_key_attr is None:
        return list(self.items.values())
    return [item for partition in self.items.values() for item in partition.values()]


class _ObjectBytes:
    """A stored object's bytes as moto's range handling uses them (their length and one
    slice), read from the object's buffer when sliced."""

    def __init__(self, key):
        self.key = key

    def __len__(self):
        return self.key.size

    def __getitem__(self, part):
        start, stop, _ = part.indices(len(self))
        with self.key.lock:
            self.key._value_buffer.seek(start)
            return self.key._value_buffer.read(max(0, stop - start))


_SINGLE_RANGE = re.compile(r"bytes=(\d+)-(\d*)")
_ranged = threading.local()
_stored_value = FakeKey.value


def _value(self):
    if getattr(_ranged, "active", False):
        return _ObjectBytes(self)
    return _stored_value.fget(self)


def _get_object(get):
    def wrapper(self):
        # Only a single range that moto will slice: any other answer sends the value as it is.
        single = _SINGLE_RANGE.fullmatch(self.headers.get("range") or "")
        _ranged.active = bool(single) and (not single[2] or int(single[1]) <= int(single[2])) \
            and "partNumber" not in self.querystring
        try:
            return get(self)
        finally:
            _ranged.active = False

    return wrapper


def install():
    dynamodb_models.copy = _TablesAsTheyAre
    DynamoDBBackend.transact_write_items = _transact_write_items(DynamoDBBackend.transact_write_items)
    Table.all_items_unsorted = _all_items_unsorted
    Table.query = _query(Table.query)
    FakeKey.value = property(_value, _stored_value.fset)
    S3Response.get_object = _get_object(S3Response.get_object)
