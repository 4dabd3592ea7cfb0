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

CodePipeline's part can be played here too, as CodePipeline plays it: a test starts a
run of the action with the function's Invoke URL and the first job's event,

    POST /_gantry/codepipeline/runs   {"functionUrl": "http://127.0.0.1:PORT/2015-03-31/functions/<name>/invocations",
                                       "event": {"CodePipeline.job": {...}}, "intervalSeconds": 0.2}

and the stand-in invokes the function with the event; each time a job of the run is
answered with a continuation token, it invokes the function again, `intervalSeconds`
later, with a new job (`<first id>-continuation-<n>`, the same data and the token), until
a job is answered without one or fails.

    GET /_gantry/codepipeline/runs/<first job id>   ->  {"jobs": [...], "results": [...],
                                                         "ended": true|false, "errors": [...]}

`results` are every job's, in order, each with its `jobId`; `errors` are invocations that
failed (a function error, or no answer).

Left out: checking the job id against a pipeline's jobs (any id is taken), the
`outputVariables` of a success beyond recording them, and the action's timeout.
"""

import copy
import json
import threading
import urllib.request
import uuid

from moto.moto_server.werkzeug_app import DomainDispatcherApplication

PREFIX = "/_gantry/codepipeline/jobs/"
RUNS = "/_gantry/codepipeline/runs"
TARGET = "CodePipeline_20150709."
OPERATIONS = ("PutJobSuccessResult", "PutJobFailureResult")
FAILURE_TYPES = ("JobFailed", "ConfigurationError", "PermissionError", "RevisionOutOfSync",
                 "RevisionUnavailable", "SystemUnavailable")

_lock = threading.Lock()
_jobs = {}  # job id -> [result, ...]
_runs = {}  # first job id -> {"url", "event", "interval", "jobs": [job id, ...], "errors": [...]}
_run_of = {}  # job id -> first job id of its run


def reset():
    with _lock:
        _jobs.clear()
        _runs.clear()
        _run_of.clear()


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
        token = result.get("continuationToken") if result["result"] == "success" else None
        run_id = _run_of.get(job_id)
        if token and run_id is not None:
            run = _runs[run_id]
            event = copy.deepcopy(run["event"])
            following = f"{run_id}-continuation-{len(run['jobs'])}"
            event["CodePipeline.job"]["id"] = following
            event["CodePipeline.job"]["data"]["continuationToken"] = token
            run["jobs"].append(following)
            _run_of[following] = run_id
            _invoke_later(run_id, event, run["interval"])
    return "200 OK", {}


def _invoke_later(run_id, event, delay):
    # Not from inside the request that recorded the result: the function waits for it.
    timer = threading.Timer(delay, _invoke, args=(run_id, event))
    timer.daemon = True
    timer.start()


def _invoke(run_id, event):
    with _lock:
        run = _runs.get(run_id)
    if run is None:  # reset meanwhile
        return
    request = urllib.request.Request(run["url"], data=json.dumps(event).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    job_id = event["CodePipeline.job"]["id"]
    try:
        with urllib.request.urlopen(request, timeout=300) as response:
            body = response.read().decode("utf-8", "replace")
            failed = response.headers.get("X-Amz-Function-Error")
    except OSError as error:
        failed, body = "NoAnswer", str(error)
    if failed:
        with _lock:
            run["errors"].append({"jobId": job_id, "error": failed, "body": body[:2000]})


def start_run(body):
    """Starts a run of the action; returns (status, answer)."""
    url, event = body.get("functionUrl"), body.get("event")
    try:
        job_id = event["CodePipeline.job"]["id"]
        event["CodePipeline.job"]["data"]
        interval = float(body.get("intervalSeconds", 0.5))
    except (TypeError, KeyError, ValueError):
        return "400 Bad Request", {"message": "functionUrl, event ({\"CodePipeline.job\": {\"id\", \"data\"}}) "
                                              "and an optional intervalSeconds (a number) are required"}
    if not isinstance(url, str) or not url.startswith("http"):
        return "400 Bad Request", {"message": "functionUrl: the function's Invoke URL (http://...)"}
    with _lock:
        if job_id in _run_of:
            return "400 Bad Request", {"message": f"job {job_id} has a run already"}
        _runs[job_id] = {"url": url, "event": event, "interval": max(interval, 0.0), "jobs": [job_id],
                         "errors": []}
        _run_of[job_id] = job_id
    _invoke_later(job_id, event, 0)
    return "200 OK", {"jobId": job_id}


def run_state(run_id):
    with _lock:
        run = _runs.get(run_id)
        if run is None:
            return None
        results = [dict(result, jobId=job) for job in run["jobs"] for result in _jobs.get(job, [])]
        return {"jobs": list(run["jobs"]), "results": results, "ended": _ended(_jobs.get(run["jobs"][-1], [])),
                "errors": list(run["errors"])}


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
        method = environ.get("REQUEST_METHOD")
        if path == RUNS and method == "POST":
            length = int(environ.get("CONTENT_LENGTH") or 0)
            try:
                body = json.loads(environ["wsgi.input"].read(length) or b"{}")
            except ValueError:
                return _answer(start_response, "400 Bad Request", {"message": "the body is not JSON"})
            status, answer = start_run(body if isinstance(body, dict) else {})
            return _answer(start_response, status, answer)
        if path.startswith(RUNS + "/") and method == "GET":
            state = run_state(path[len(RUNS) + 1:])
            if state is None:
                return _answer(start_response, "404 Not Found", {"message": "no such run"})
            return _answer(start_response, "200 OK", state)
        if path.startswith(PREFIX) and method == "GET":
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
