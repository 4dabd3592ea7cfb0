"""Faults on demand: an AWS call failing for now, where a test must see Gantry ride it out.

moto never fails for now; AWS does (DynamoDB's InternalServerError, throttling). A test
arms a fault over HTTP on the stand-in's own port:

    POST /_gantry/faults?target=<X-Amz-Target>&contains=<text>&count=<n>

and the next `n` requests with that X-Amz-Target whose body contains `text` answer HTTP 500
with the service's InternalServerError, as AWS does when it fails for now; the SDKs retry
such an answer (three attempts by default), so `n` counts attempts, not calls. With
`&kind=conflict` (TransactWriteItems only) the request is cancelled instead, as DynamoDB
cancels a transaction that meets another on one of its items: HTTP 400
TransactionCanceledException whose CancellationReasons say TransactionConflict for each
item whose JSON contains `text` and None for the others; moto runs requests one at a
time and never answers it. Other requests pass untouched. `DELETE /_gantry/faults` disarms every fault, and so does
`POST /moto-api/reset`. Only services reached by X-Amz-Target (DynamoDB, and SQS over
JSON) are covered: those are the writes whose failures Gantry must survive.
"""

import io
import json
import threading
import uuid
from urllib.parse import parse_qs

from moto.moto_server.werkzeug_app import DomainDispatcherApplication

PATH = "/_gantry/faults"

_lock = threading.Lock()
_armed = []  # each: {"target", "contains", "left"}


def reset():
    with _lock:
        _armed.clear()


def _take(target, body):
    """The first armed fault this request matches, counted down, or None."""
    with _lock:
        for fault in _armed:
            if fault["target"] == target and fault["contains"] in body:
                fault["left"] -= 1
                if fault["left"] <= 0:
                    _armed.remove(fault)
                return fault
    return None


def _conflict(body, contains, start_response):
    """A transaction cancelled as DynamoDB cancels one that met another on an item."""
    items = json.loads(body).get("TransactItems", [])
    reasons = [{"Code": "TransactionConflict", "Message": "Transaction is ongoing for the item"}
               if contains in json.dumps(item) else {"Code": "None"} for item in items]
    codes = ", ".join(reason["Code"] for reason in reasons)
    return _answer(start_response, "400 Bad Request", {
        "__type": "com.amazonaws.dynamodb.v20120810#TransactionCanceledException",
        "Message": f"Transaction cancelled, please refer cancellation reasons for specific reasons [{codes}]",
        "CancellationReasons": reasons,
    }, "application/x-amz-json-1.0")


def _answer(start_response, status, body, content_type="application/json"):
    data = json.dumps(body).encode()
    start_response(status, [("Content-Type", content_type), ("Content-Length", str(len(data))),
                            ("x-amzn-RequestId", str(uuid.uuid4()))])
    return [data]


def _admin(environ, start_response):
    method = environ.get("REQUEST_METHOD")
    if method == "DELETE":
        reset()
        return _answer(start_response, "200 OK", {"armed": 0})
    if method != "POST":
        return _answer(start_response, "405 Method Not Allowed", {"message": "POST or DELETE"})
    query = parse_qs(environ.get("QUERY_STRING", ""))
    try:
        fault = {"target": query["target"][0], "contains": query.get("contains", [""])[0],
                 "left": int(query.get("count", ["1"])[0]), "kind": query.get("kind", ["failure"])[0]}
    except (KeyError, ValueError):
        return _answer(start_response, "400 Bad Request",
                       {"message": "target (an X-Amz-Target) is required; count must be a whole number"})
    if fault["kind"] not in ("failure", "conflict"):
        return _answer(start_response, "400 Bad Request", {"message": "kind must be failure or conflict"})
    if fault["kind"] == "conflict" and not fault["target"].endswith(".TransactWriteItems"):
        return _answer(start_response, "400 Bad Request",
                       {"message": "kind=conflict applies to DynamoDB_20120810.TransactWriteItems only"})
    if fault["left"] < 1:
        return _answer(start_response, "400 Bad Request", {"message": "count must be at least 1"})
    with _lock:
        _armed.append(fault)
        armed = len(_armed)
    return _answer(start_response, "200 OK", {"armed": armed})


def _failure(target, start_response):
    if target.startswith("DynamoDB_"):
        body = {"__type": "com.amazonaws.dynamodb.v20120810#InternalServerError",
                "message": "Internal server error (a fault the stand-in was asked for)"}
        content_type = "application/x-amz-json-1.0"
    else:
        body = {"__type": "InternalFailure",
                "message": "The request processing has failed (a fault the stand-in was asked for)"}
        content_type = "application/x-amz-json-1.0"
    return _answer(start_response, "500 Internal Server Error", body, content_type)


def install():
    dispatch = DomainDispatcherApplication.__call__

    def call(self, environ, start_response):
        if environ.get("PATH_INFO") == PATH:
            return _admin(environ, start_response)
        target = environ.get("HTTP_X_AMZ_TARGET", "")
        if target and _armed:
            length = int(environ.get("CONTENT_LENGTH") or 0)
            body = environ["wsgi.input"].read(length) if length else b""
            # moto reads the body again.
            environ["wsgi.input"] = io.BytesIO(body)
            text = body.decode("utf-8", "replace")
            fault = _take(target, text)
            if fault and fault["kind"] == "conflict":
                return _conflict(text, fault["contains"], start_response)
            if fault:
                return _failure(target, start_response)
        return dispatch(self, environ, start_response)

    DomainDispatcherApplication.__call__ = call
