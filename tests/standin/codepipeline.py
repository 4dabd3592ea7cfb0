"""CodePipeline's job results, which moto does not implement.

A function behind CodePipeline's "Invoke AWS Lambda" action ends each invocation with
PutJobSuccessResult (with a continuation token while its work goes on: CodePipeline then
invokes it again with the token) or PutJobFailureResult. Both arrive here in CodePipeline's
own protocol (JSON 1.1, `X-Amz-Target: CodePipeline_20150709.PutJobSuccessResult` or
`...PutJobFailureResult`) and are recorded per job id, in order, as sent:

    {"result": "success", "continuationToken": ..., "executionDetails": ..., "currentRevision": ...}
    {"result": "failure", "failureDetails": {"type": ..., "message": ..., "externalExecutionId": ...}}

A test reads them, playing CodePipeline's part (invoking the function again with the
token), with

    GET /_gantry/codepipeline/jobs/<job id>   ->  {"jobId": ..., "results": [...]}

(an unknown job answers an empty list). As CodePipeline does, a result for a job that has
ended already (a failure, or a success without a continuation token) is refused with
InvalidJobStateException, and nothing is recorded. Other CodePipeline operations go to
moto as before. `POST /moto-api/reset` forgets every job.

Left out: checking the job id against a pipeline's jobs (any id is taken), and the
`outputVariables` of a success beyond recording them.
"""

import json
import threading
import uuid

from moto.moto_server.werkzeug_app import DomainDispatcherApplication

PREFIX = "/_gantry/codepipeline/jobs/"
TARGET = "CodePipeline_20150709."
OPERATIONS = ("PutJobSuccessResult", "PutJobFailureResult")
FAILURE_TYPES = ("JobFailed", "ConfigurationError", "PermissionError", "RevisionOutOfSync",
                 "RevisionUnavailable", "SystemUnavailable")

_lock = threading.Lock()
_jobs = {}  # job id -> [result, ...]


def reset():
    with _lock:
        _jobs.clear()


def results(job_id):
    with _lock:
        return [dict(result) for result in _jobs.get(job_id, [])]


def _ended(recorded):
    if not recorded:
        return False
    last = recorded[-1]
    return last["result"] == "failure" or not last.get("continuationToken")


def record(operation, body):
    """Records one result; returns (status, answer)."""
    job_id = body.get("jobId")
    if not isinstance(job_id, str) or not job_id:
        return "400 Bad Request", {"__type": "ValidationException",
                                   "message": "jobId: is required (the job's id from the event)"}
    if operation == "PutJobSuccessResult":
        result = {"result": "success"}
        for field in ("continuationToken", "executionDetails", "currentRevision", "outputVariables"):
            if body.get(field) is not None:
                result[field] = body[field]
    else:
        details = body.get("failureDetails")
        if not isinstance(details, dict) or details.get("type") not in FAILURE_TYPES \
                or not isinstance(details.get("message"), str):
            return "400 Bad Request", {
                "__type": "ValidationException",
                "message": "failureDetails: needs type (one of " + ", ".join(FAILURE_TYPES)
                           + ") and message"}
        if len(details["message"]) > 5000:
            return "400 Bad Request", {"__type": "ValidationException",
                                       "message": "failureDetails.message: at most 5000 characters"}
        result = {"result": "failure", "failureDetails": details}
    with _lock:
        recorded = _jobs.setdefault(job_id, [])
        if _ended(recorded):
            return "400 Bad Request", {"__type": "InvalidJobStateException",
                                       "message": f"job {job_id} has ended already"}
        recorded.append(result)
    return "200 OK", {}


def _answer(start_response, status, body):
    data = json.dumps(body).encode()
    start_response(status, [("Content-Type", "application/x-amz-json-1.1"),
                            ("Content-Length", str(len(data))),
                            ("x-amzn-RequestId", str(uuid.uuid4()))])
    return [data]


def install():
    dispatch = DomainDispatcherApplication.__call__

    def call(self, environ, start_response):
        path = environ.get("PATH_INFO", "")
        if path.startswith(PREFIX) and environ.get("REQUEST_METHOD") == "GET":
            job_id = path[len(PREFIX):]
            return _answer(start_response, "200 OK", {"jobId": job_id, "results": results(job_id)})
        target = environ.get("HTTP_X_AMZ_TARGET", "")
        operation = target[len(TARGET):] if target.startswith(TARGET) else None
        if operation in OPERATIONS:
            length = int(environ.get("CONTENT_LENGTH") or 0)
            raw = environ["wsgi.input"].read(length) if length else b""
            try:
                body = json.loads(raw or b"{}")
            except ValueError:
                return _answer(start_response, "400 Bad Request",
                               {"__type": "SerializationException", "message": "the body is not JSON"})
            status, answer = record(operation, body)
            return _answer(start_response, status, answer)
        return dispatch(self, environ, start_response)

    DomainDispatcherApplication.__call__ = call
