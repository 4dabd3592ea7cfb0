"""Tests of tests/standin/codepipeline.py: CodePipeline's job results, sent with boto3 (the
same protocol as the AWS SDK for Rust's), recorded per job and read back over HTTP. Run by
`make test`."""

import json
import urllib.request

from botocore.exceptions import ClientError

from standin_fixture import StandInTestCase


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
