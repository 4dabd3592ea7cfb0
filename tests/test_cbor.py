"""Tests of tests/standin/cbor.py: CloudWatch over Smithy RPC v2 CBOR (botocore's protocol
for CloudWatch, as the AWS SDK for Rust's), against a real launcher process. Run by
`make test`."""

import datetime
import unittest

from standin_fixture import StandInTestCase


class CborTest(StandInTestCase):
    def test_alarms_round_trip_with_state_and_timestamps(self):
        cloudwatch = self.client("cloudwatch")
        self.assertEqual(cloudwatch.meta.service_model.protocol, "smithy-rpc-v2-cbor")
        cloudwatch.put_metric_alarm(AlarmName="cbor-errors", MetricName="Errors", Namespace="Shop",
                                    Statistic="Sum", Period=60, EvaluationPeriods=1, Threshold=1.0,
                                    ComparisonOperator="GreaterThanThreshold")
        cloudwatch.set_alarm_state(AlarmName="cbor-errors", StateValue="ALARM", StateReason="test")
        alarms = cloudwatch.describe_alarms(AlarmNames=["cbor-errors", "cbor-missing"])
        (alarm,) = alarms["MetricAlarms"]
        self.assertEqual(alarm["AlarmName"], "cbor-errors")
        self.assertEqual(alarm["StateValue"], "ALARM")
        self.assertIsInstance(alarm["StateUpdatedTimestamp"], datetime.datetime)
        self.assertEqual(alarms["CompositeAlarms"], [])

    def test_an_error_keeps_its_code(self):
        cloudwatch = self.client("cloudwatch")
        with self.assertRaises(cloudwatch.exceptions.ResourceNotFound):
            cloudwatch.set_alarm_state(AlarmName="cbor-nobody", StateValue="ALARM", StateReason="x")


if __name__ == "__main__":
    unittest.main()
