#!/usr/bin/env python3
"""moto_server, with DynamoDB requests serialized.

moto's server is threaded, and its DynamoDB backend checks a ConditionExpression and
writes the item in separate steps without a lock: two concurrent conditional writes on
the same version can both succeed (measured: 1 duplicate win in 800 racing updates),
where real DynamoDB lets exactly one through. Gantry's correctness rests on that
guarantee, so its tests, benchmarks and demo run moto through this launcher, which
serializes DynamoDB requests and leaves every other service (SQS long polls included)
concurrent. Same flags as moto_server.
"""

import sys
import threading

import moto.server
from moto.moto_server.werkzeug_app import DomainDispatcherApplication

_dynamodb = threading.Lock()
_dispatch = DomainDispatcherApplication.__call__


def _serialized(self, environ, start_response):
    if environ.get("HTTP_X_AMZ_TARGET", "").startswith("DynamoDB_"):
        with _dynamodb:
            # Materialize the response inside the lock: the write happens while it is built.
            return list(_dispatch(self, environ, start_response))
    return _dispatch(self, environ, start_response)


DomainDispatcherApplication.__call__ = _serialized

if __name__ == "__main__":
    moto.server.main(sys.argv[1:])
