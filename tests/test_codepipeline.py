"""Tests of tests/standin/codepipeline.py: CodePipeline's job results, sent with boto3 (the
same protocol as the AWS SDK for Rust's), recorded per job and read back over HTTP. Run by
`make test`."""

import json
import threading
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from botocore.exceptions import ClientError

from standin_fixture import StandInTestCase, free_port, wait_until


class CodePipelineTest(StandInTestCase):
    def results(self, job_id):
        with urllib.request.urlopen(f"{self.endpoint}/_gantry/codepipeline/jobs/{job_id}", timeout=5) as response:
            answer = json.load(response)
        self.assertEqual(answer["jobId"], job_id)
        return answer["results"]

    def test_continuations_then_success_are_recorded_in_order_and_the_job_then_ends(self):
        pipeline = self.client("codepipeline")
        self.assertEqual(self.results("job-1"), [])
        pipeline.put_job_success_result(jobId="job-1", continuationToken="d-ABC",
                                        executionDetails={"summary": "running", "externalExecutionId": "d-ABC"})
        pipeline.put_job_success_result(jobId="job-1", continuationToken="d-ABC")
        pipeline.put_job_success_result(jobId="job-1", executionDetails={"summary": "done"})
        results = self.results("job-1")
        self.assertEqual([r.get("continuationToken") for r in results], ["d-ABC", "d-ABC", None])
        self.assertEqual(results[0]["executionDetails"]["externalExecutionId"], "d-ABC")
        self.assertEqual(results[2]["result"], "success")
        with self.assertRaises(ClientError) as ended:
            pipeline.put_job_failure_result(jobId="job-1", failureDetails={"type": "JobFailed", "message": "late"})
        self.assertEqual(ended.exception.response["Error"]["Code"], "InvalidJobStateException")
        self.assertEqual(len(self.results("job-1")), 3, "a refused result is not recorded")

    def test_a_failure_keeps_its_type_and_message_and_a_bad_one_is_refused(self):
        pipeline = self.client("codepipeline")
        with self.assertRaises(ClientError) as refused:
            pipeline.put_job_failure_result(jobId="job-2", failureDetails={"type": "Oops", "message": "x"})
        self.assertEqual(refused.exception.response["Error"]["Code"], "ValidationException")
        pipeline.put_job_failure_result(jobId="job-2", failureDetails={"type": "ConfigurationError",
                                                                       "message": "UserParameters: not JSON"})
        (failure,) = self.results("job-2")
        self.assertEqual(failure, {"result": "failure", "failureDetails": {
            "type": "ConfigurationError", "message": "UserParameters: not JSON"}})
        self.assertEqual(self.results("job-3"), [], "other jobs are untouched")

    def test_a_run_invokes_the_function_again_with_each_continuation_token_until_it_ends(self):
        pipeline = self.client("codepipeline")
        seen = []

        class Function(BaseHTTPRequestHandler):
            """A pipeline function: continues twice, then succeeds."""

            def log_message(self, *args):
                pass

            def do_POST(self):
                event = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                job = event["CodePipeline.job"]
                seen.append((job["id"], job["data"].get("continuationToken"),
                             job["data"]["actionConfiguration"]["configuration"]["UserParameters"]))
                if len(seen) < 3:
                    pipeline.put_job_success_result(jobId=job["id"], continuationToken=f"d-{len(seen)}")
                else:
                    pipeline.put_job_success_result(jobId=job["id"])
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

        server = ThreadingHTTPServer(("127.0.0.1", free_port()), Function)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        self.addCleanup(server.server_close)
        self.addCleanup(server.shutdown)
        url = f"http://127.0.0.1:{server.server_address[1]}/2015-03-31/functions/f/invocations"
        event = {"CodePipeline.job": {"id": "run-1", "data": {
            "actionConfiguration": {"configuration": {"UserParameters": "{}"}}, "continuationToken": None}}}
        request = urllib.request.Request(f"{self.endpoint}/_gantry/codepipeline/runs", method="POST",
                                         data=json.dumps({"functionUrl": url, "event": event,
                                                          "intervalSeconds": 0}).encode())
        with urllib.request.urlopen(request, timeout=5) as response:
            self.assertEqual(json.load(response), {"jobId": "run-1"})

        def state():
            with urllib.request.urlopen(f"{self.endpoint}/_gantry/codepipeline/runs/run-1", timeout=5) as response:
                answer = json.load(response)
            return answer if answer["ended"] else None

        ended = wait_until(state, what="the run to end")
        self.assertEqual(ended["jobs"], ["run-1", "run-1-continuation-1", "run-1-continuation-2"])
        self.assertEqual(seen, [("run-1", None, "{}"), ("run-1-continuation-1", "d-1", "{}"),
                                ("run-1-continuation-2", "d-2", "{}")])
        self.assertEqual([(r["jobId"], r.get("continuationToken")) for r in ended["results"]],
                         [("run-1", "d-1"), ("run-1-continuation-1", "d-2"), ("run-1-continuation-2", None)])
        self.assertEqual(ended["errors"], [])
