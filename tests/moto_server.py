#!/usr/bin/env python3
"""moto_server, with DynamoDB requests serialized and SQS senders told apart.

moto's server is threaded, and its DynamoDB backend checks a ConditionExpression and
writes the item in separate steps without a lock: two concurrent conditional writes on
the same version can both succeed (measured: 1 duplicate win in 800 racing updates),
where real DynamoDB lets exactly one through. Gantry's correctness rests on that
guarantee, so its tests, benchmarks and demo run moto through this launcher, which
serializes DynamoDB requests and leaves every other service (SQS long polls included)
concurrent.

moto also stamps every SQS message with one constant SenderId, where SQS gives the IAM
identity that signed the SendMessage request: an IAM user's unique id (`AIDA...`), or
for temporary credentials of an assumed role, the role's id and the session name
(`AROA...:session`; an EC2 instance profile's session name is the instance id). Gantry
binds each host's reports to its identity through SenderId, so this launcher derives it
from the request's access key and moto's IAM users and STS sessions, as SQS does. Keys
moto does not know (the tests' default `testing`) keep moto's constant.

moto gives an IAM user a lowercase id of its own making, where IAM gives `AIDA` and 17
uppercase letters and digits: this launcher gives users ids of IAM's form, which is the
SenderId their messages carry and the shape Gantry checks before reading a report.

It also loads the stand-in's extensions where moto stops (tests/standin/): Auto Scaling
lifecycle hooks that wait, notify and time out; ELBv2 target health from real HTTP
health checks, and draining; an HTTP reverse proxy per ELBv2 HTTP listener, at the load
balancer's DNSName (`127.0.0.1:PORT`); Lambda functions that run as local processes,
an alias's weights choosing the version; faults on demand. Each module says what it does
and what it leaves out.

Same flags as moto_server.
"""

import random
import string
import sys
import threading

import moto.server
from moto.iam import models as iam_models
from moto.moto_server.werkzeug_app import DomainDispatcherApplication
from moto.sqs import models as sqs_models
from moto.sqs.responses import SQSResponse

_dynamodb = threading.Lock()
_dispatch = DomainDispatcherApplication.__call__


def _serialized(self, environ, start_response):
    if environ.get("HTTP_X_AMZ_TARGET", "").startswith("DynamoDB_"):
        with _dynamodb:
            # Materialize the response inside the lock: the write happens while it is built.
            return list(_dispatch(self, environ, start_response))
    return _dispatch(self, environ, start_response)


DomainDispatcherApplication.__call__ = _serialized

_sending = threading.local()


def sender_id(access_key):
    """The SenderId SQS gives a message signed with `access_key`."""
    from moto.iam.models import iam_backends
    from moto.sts.models import sts_backends

    for account_id, account in list(iam_backends.items()):
        backend = account["aws"]
        key = backend.access_keys.get(access_key)
        if key is not None and key.user_name:
            return backend.get_user(key.user_name).id
        for session in list(sts_backends[account_id]["global"].assumed_roles):
            if session.access_key_id == access_key:
                return session.user_id
    return sqs_models.DEFAULT_SENDER_ID


def _signed(send):
    def wrapper(self):
        _sending.sender = sender_id(self.get_access_key())
        try:
            return send(self)
        finally:
            _sending.sender = None

    return wrapper


SQSResponse.send_message = _signed(SQSResponse.send_message)
SQSResponse.send_message_batch = _signed(SQSResponse.send_message_batch)
_message_init = sqs_models.Message.__init__


def _message_with_sender(self, *args, **kwargs):
    _message_init(self, *args, **kwargs)
    # Messages SNS delivers are made outside an SQS request: they keep the constant.
    self.sender_id = getattr(_sending, "sender", None) or sqs_models.DEFAULT_SENDER_ID


sqs_models.Message.__init__ = _message_with_sender

_user_init = iam_models.User.__init__


def _user_with_aws_id(self, *args, **kwargs):
    _user_init(self, *args, **kwargs)
    alphabet = string.ascii_uppercase + string.digits
    self.id = "AIDA" + "".join(random.choice(alphabet) for _ in range(17))


iam_models.User.__init__ = _user_with_aws_id

def _own_endpoint(argv):
    """The address moto_server will listen on, from its -H/--host and -p/--port flags."""
    host, port = "127.0.0.1", "5000"
    for index, flag in enumerate(argv[:-1]):
        if flag in ("-p", "--port"):
            port = argv[index + 1]
        elif flag in ("-H", "--host"):
            host = argv[index + 1]
    return f"http://{host}:{port}"


if __name__ == "__main__":
    import standin  # tests/standin/, beside this file

    standin.install(_own_endpoint(sys.argv[1:]))
    moto.server.main(sys.argv[1:])
