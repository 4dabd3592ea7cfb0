"""DynamoDB calls whose cost follows the request, not the size of the table.

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
"""

import copy
import inspect

from moto.dynamodb import models as dynamodb_models
from moto.dynamodb.models import DynamoDBBackend
from moto.dynamodb.models.table import Table


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


def install():
    dynamodb_models.copy = _TablesAsTheyAre
    DynamoDBBackend.transact_write_items = _transact_write_items(DynamoDBBackend.transact_write_items)
    Table.all_items_unsorted = _all_items_unsorted
    Table.query = _query(Table.query)
