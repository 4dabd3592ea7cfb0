"""The stand-in AWS's extensions to moto, where moto stops short of what AWS documents.

Loaded into the moto process by tests/moto_server.py (`install()`), never on import, so
that unittest's discovery of tests/ can import this package without changing moto.

- `lifecycle`: Auto Scaling lifecycle hooks that hold instances in Pending:Wait and
  Terminating:Wait, send their notifications, and time out.
- `health`: ELBv2 target health from real HTTP health checks, and draining.
- `proxy`: an HTTP reverse proxy per ELBv2 HTTP listener (a load balancer that works).
- `cbor`: CloudWatch over Smithy RPC v2 CBOR (the SDKs' protocol for it), through moto's
  JSON protocol.
- `limits`: AWS's size and count limits on the DynamoDB, SQS and SNS calls Gantry makes
  (key and item sizes, batch and transaction sizes, message sizes), where moto lets them pass.
- `lambda_runner`: Lambda functions whose invocation runs their package as a local
  process, an alias's routing weights choosing the version, as Lambda does.
- `faults`: an AWS call failing for now (HTTP 500) when a test arms it, for tests of what
  Gantry does when DynamoDB or SQS fails for a moment.
- `scale`: DynamoDB calls whose cost follows the request, not the table: TransactWriteItems
  copies the items it names for its rollback, not the whole table (moto's copy made a
  5,000-host benchmark exhaust 24 GiB), and Query reads the partition it asks for, not
  every item sorted.
- `codepipeline`: CodePipeline's job results (PutJobSuccessResult, PutJobFailureResult),
  recorded per job; and CodePipeline's part in a run of an Invoke action, the function
  invoked again with each continuation token.

Addresses: see `addresses`. `imds` is not loaded into moto: tests/fleet_runner.py runs
one per simulated instance.
"""

_installed = False


def install(endpoint=None):
    """Patches moto (once per process) and starts the background threads. `endpoint`:
    the stand-in's own address, given to the Lambda functions it runs."""
    global _installed
    if _installed:
        return
    _installed = True
    from . import cbor, codepipeline, faults, health, lambda_runner, lifecycle, limits, proxy, scale

    lifecycle.install()
    health.install()
    proxy.install()
    cbor.install()
    limits.install()
    scale.install()
    faults.install()
    codepipeline.install()
    lambda_runner.install(endpoint)

    from moto.core.base_backend import BackendDict

    reset_backends = BackendDict.reset

    def reset(cls):
        # `POST /moto-api/reset` clears moto's backends: the threads' state goes with them.
        reset_backends()
        lifecycle.reset()
        health.reset()
        proxy.reset()
        faults.reset()
        codepipeline.reset()

    BackendDict.reset = classmethod(reset)
