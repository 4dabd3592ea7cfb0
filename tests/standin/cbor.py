"""CloudWatch over Smithy RPC v2 CBOR, which moto 5.2 does not read.

CloudWatch's current protocol is Smithy RPC v2 CBOR: the AWS SDK for Rust's CloudWatch
client (and botocore's) sends `POST /service/GraniteServiceVersion20100801/operation/<Op>`
with a CBOR body and the header `smithy-protocol: rpc-v2-cbor`. moto reads CloudWatch's
query and JSON protocols only. This wraps moto's WSGI dispatcher: such a request reaches
moto as the same operation in CloudWatch's JSON protocol, and moto's JSON answer goes back
as CBOR, with timestamps as CBOR tag 1 (epoch seconds) wherever the operation's output
shape has one, as the protocol requires. An error keeps its HTTP status, `__type` and
message. Every other request passes through untouched.
"""

import base64
import datetime
import io
import json

import cbor2
from moto.moto_server.werkzeug_app import DomainDispatcherApplication

SERVICE = "GraniteServiceVersion20100801"
PREFIX = f"/service/{SERVICE}/operation/"

_model = None


def _service_model():
    global _model
    if _model is None:
        import botocore.session

        _model = botocore.session.get_session().get_service_model("cloudwatch")
    return _model


def to_json(value):
    """A decoded CBOR value as JSON: timestamps to epoch seconds, blobs to base64."""
    if isinstance(value, dict):
        return {key: to_json(item) for key, item in value.items()}
    if isinstance(value, list):
        return [to_json(item) for item in value]
    if isinstance(value, datetime.datetime):
        return value.timestamp()
    if isinstance(value, cbor2.CBORTag) and value.tag == 1:
        return value.value
    if isinstance(value, (bytes, bytearray)):
        return base64.b64encode(value).decode()
    return value


def to_cbor_value(value, shape):
    """A JSON value of `shape` as the CBOR protocol carries it; nulls are left out."""
    if value is None or shape is None:
        return value
    kind = shape.type_name
    if kind == "structure":
        return {
            name: to_cbor_value(item, shape.members.get(name))
            for name, item in value.items()
            if item is not None
        }
    if kind == "list":
        return [to_cbor_value(item, shape.member) for item in value]
    if kind == "map":
        return {key: to_cbor_value(item, shape.value) for key, item in value.items()}
    if kind == "timestamp":
        if isinstance(value, str):
            from botocore.utils import parse_timestamp

            return cbor2.CBORTag(1, parse_timestamp(value).timestamp())
        return cbor2.CBORTag(1, float(value))
    if kind == "blob" and isinstance(value, str):
        return base64.b64decode(value)
    return value


def translate(app, environ, start_response):
    """Serves one RPC v2 CBOR request through moto's JSON protocol."""
    operation = environ["PATH_INFO"][len(PREFIX):]
    length = int(environ.get("CONTENT_LENGTH") or 0)
    raw = environ["wsgi.input"].read(length) if length else b""
    request = to_json(cbor2.loads(raw)) if raw else {}
    body = json.dumps(request).encode()
    inner = dict(environ)
    inner.pop("HTTP_SMITHY_PROTOCOL", None)
    inner.update(
        {
            "PATH_INFO": "/",
            "CONTENT_TYPE": "application/x-amz-json-1.0",
            "HTTP_X_AMZ_TARGET": f"{SERVICE}.{operation}",
            "CONTENT_LENGTH": str(len(body)),
            "wsgi.input": io.BytesIO(body),
        }
    )
    answer = {}

    def capture(status, headers, exc_info=None):
        answer["status"] = status
        answer["headers"] = headers
        return lambda _data: None

    text = b"".join(app(inner, capture))
    status = answer["status"]
    ok = status.startswith("2")
    try:
        decoded = json.loads(text) if text.strip() else {}
    except ValueError:
        decoded = {"__type": "InternalFailure", "message": text.decode(errors="replace")}
    if ok:
        shape = _service_model().operation_model(operation).output_shape
        out = to_cbor_value(decoded, shape) if shape is not None else {}
    else:
        code = str(decoded.get("__type") or decoded.get("Code") or "InternalFailure")
        message = decoded.get("message") or decoded.get("Message") or ""
        out = {"__type": code.split("#")[-1], "message": str(message)}
    payload = cbor2.dumps(out)
    headers = [
        (name, value)
        for name, value in answer["headers"]
        if name.lower() not in ("content-type", "content-length", "x-amzn-query-error")
    ]
    headers += [
        ("Content-Type", "application/cbor"),
        ("Content-Length", str(len(payload))),
        ("smithy-protocol", "rpc-v2-cbor"),
    ]
    start_response(status, headers)
    return [payload]


def install():
    dispatch = DomainDispatcherApplication.__call__

    def dispatch_cbor(self, environ, start_response):
        if environ.get("PATH_INFO", "").startswith(PREFIX):
            return translate(lambda env, respond: dispatch(self, env, respond), environ, start_response)
        return dispatch(self, environ, start_response)

    DomainDispatcherApplication.__call__ = dispatch_cbor
