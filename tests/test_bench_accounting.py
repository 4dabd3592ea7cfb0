"""The benchmarks' own accounting, checked on synthetic requests (no builds, no servers
beyond what the self-tests start): lost races by item (bench/scale.py) and requests by
caller with billed units (bench/aws_requests.py)."""

import contextlib
import io
import os
import sys
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "bench"))

import aws_requests  # noqa: E402
import scale  # noqa: E402


class BenchAccountingTest(unittest.TestCase):
    def test_scale_counts_lost_races_by_item(self):
        with contextlib.redirect_stdout(io.StringIO()) as said:
            scale.self_test()
        self.assertIn("self-test passed", said.getvalue())

    def test_requests_counts_by_caller_and_bills_units(self):
        with contextlib.redirect_stdout(io.StringIO()) as said:
            aws_requests.self_test()
        self.assertIn("self-test passed", said.getvalue())


if __name__ == "__main__":
    unittest.main()
