#!/usr/bin/env python3
"""How fast the control plane validates a bundle, to size what fits in its function.

RegisterApplicationRevision (push) and CreateDeployment download a revision's bundle and
check it as the agent would (core::bundle: a safe archive, a valid appspec, every file it
names present) before recording it. This measures that, end to end through a
release-built gantry-local against moto: bundles of each type (zip, tgz, tar) and size,
half incompressible (like binaries and jars) and half text, pushed --runs times each,
with gantry-local's timeouts off (`--no-timeouts`) so that a bundle too large for the
function's timeout is still measured.

Reports per type and size the median push time and MB/s (bundle bytes over push time),
and the largest bundle that validates within half the function's timeout at that rate.
One core here does the work; a Lambda function gets a share of a vCPU in proportion to
its memory (1,769 MB is one vCPU), so the template's memory sets the rate in AWS.

Writes bench/results/bundle.json. Usage:
    .venv/bin/python bench/bundle.py [--sizes-mb 64,1000,2000] [--runs 3]
"""

import argparse
import io
import json
import os
import statistics
import tarfile
import tempfile
import time
import zipfile

import boto3

from harness import ROOT, api, invoke, release_binary, start_local, start_moto, stop

FILE_BYTES = 4 * 1024 * 1024
HALF_TIMEOUT_S = 15  # half of template.yaml's 30 s
MAX_VALIDATED_ARCHIVE_BYTES = 1024 * 1024 * 1024  # core::bundle
APPSPEC = b"""version: 0.0
os: linux
files:
  - source: /
    destination: /opt/bench
hooks:
  AfterInstall:
    - location: scripts/after.sh
      timeout: 60
"""


def contents(size):
    """(name, bytes) of files adding up to about `size` bytes, made as they are read: even
    files random, odd files text."""
    text = b"".join(b"line %08d of a log-like, compressible text file\n" % i for i in range(FILE_BYTES // 50))
    yield "appspec.yml", APPSPEC
    yield "scripts/after.sh", b"#!/bin/sh\nexit 0\n"
    for index in range(max(1, size // FILE_BYTES)):
        yield f"app/part-{index:05d}.bin", os.urandom(FILE_BYTES) if index % 2 == 0 else text[:FILE_BYTES]


def write_bundle(path, kind, files):
    if kind == "zip":
        with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
            for name, body in files:
                archive.writestr(name, body)
        return
    mode = {"tgz": "w:gz", "tar": "w"}[kind]
    options = {"compresslevel": 1} if kind == "tgz" else {}
    with tarfile.open(path, mode, **options) as archive:
        for name, body in files:
            info = tarfile.TarInfo(name)
            info.size = len(body)
            info.mode = 0o755 if name.endswith(".sh") else 0o644
            archive.addfile(info, io.BytesIO(body))


class PushRefused(Exception):
    pass


def push(endpoint, key, kind):
    try:
        return invoke(endpoint, "push", {"applicationName": "bench", "revision": {
            "revisionType": "S3", "s3Location": {"bucket": "gantry-revisions", "key": key, "bundleType": kind}}},
            timeout=1800)
    except SystemExit as failed:  # harness.invoke's way of saying the function failed
        raise PushRefused(str(failed)) from None


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes-mb", default="64,1000,2000")
    parser.add_argument("--types", default="zip,tgz,tar")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--local", default=release_binary("gantry-local"))
    args = parser.parse_args()
    sizes = [int(size) for size in args.sizes_mb.split(",")]
    kinds = args.types.split(",")

    work = tempfile.mkdtemp(prefix="gantry-bench-bundle-")
    moto, moto_endpoint = start_moto(work)
    local, endpoint = start_local(args.local, moto_endpoint, os.path.join(work, "local.log"), ["--no-timeouts"])
    results = []
    try:
        s3 = boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1",
                          aws_access_key_id="testing", aws_secret_access_key="testing")
        api(endpoint, "CreateApplication", {"applicationName": "bench"})
        for size_mb in sizes:
            for kind in kinds:
                path = os.path.join(work, f"bundle.{kind}")
                write_bundle(path, kind, contents(size_mb * 1024 * 1024))
                bundle_bytes = os.path.getsize(path)
                key = f"bench/{size_mb}.{kind}"
                s3.upload_file(path, "gantry-revisions", key)
                os.remove(path)
                if bundle_bytes > MAX_VALIDATED_ARCHIVE_BYTES:
                    # Refused by its size before any of it is downloaded.
                    started = time.monotonic()
                    try:
                        push(endpoint, key, kind)
                        raise SystemExit(f"a {bundle_bytes}-byte bundle was taken")
                    except PushRefused as refused:
                        result = {"type": kind, "content_mb": size_mb, "bundle_mb": round(bundle_bytes / 2**20, 1),
                                  "refused_in_s": round(time.monotonic() - started, 3), "error": str(refused)}
                    s3.delete_object(Bucket="gantry-revisions", Key=key)
                    results.append(result)
                    print(json.dumps(result), flush=True)
                    continue
                times = []
                for _ in range(args.runs):
                    started = time.monotonic()
                    push(endpoint, key, kind)
                    times.append(time.monotonic() - started)
                s3.delete_object(Bucket="gantry-revisions", Key=key)
                median = statistics.median(times)
                result = {"type": kind, "content_mb": size_mb, "bundle_mb": round(bundle_bytes / 2**20, 1),
                          "push_s_median": round(median, 2), "mb_per_s": round(bundle_bytes / 2**20 / median, 1),
                          "runs": args.runs}
                results.append(result)
                print(json.dumps(result), flush=True)
    finally:
        stop([local])
        moto.kill()
        moto.wait()

    out = os.path.join(ROOT, "bench", "results", "bundle.json")
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with open(out, "w") as f:
        json.dump(results, f, indent=2)
    print("| type | content | bundle | push (median) | MB/s | bundle checked in 15 s at this rate |")
    print("|---|---|---|---|---|---|")
    for r in results:
        if "refused_in_s" in r:
            print(f"| {r['type']} | {r['content_mb']} MB | {r['bundle_mb']} MB | refused in {r['refused_in_s']:.2f} s | | |")
            continue
        print(f"| {r['type']} | {r['content_mb']} MB | {r['bundle_mb']} MB | {r['push_s_median']:.2f} s | "
              f"{r['mb_per_s']:.0f} | {r['mb_per_s'] * HALF_TIMEOUT_S / 1024:.1f} GB |")


if __name__ == "__main__":
    main()
