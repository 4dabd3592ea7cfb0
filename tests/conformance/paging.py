"""boto3's CodeDeploy paginators against Gantry: ListApplications over more applications
than one page holds comes back whole, in pages linked by nextToken, each name once.

Usage: python tests/conformance/paging.py ENDPOINT COUNT   (exits 1 on a mismatch)
"""

import sys

import boto3


def main():
    endpoint, count = sys.argv[1], int(sys.argv[2])
    client = boto3.client("codedeploy", endpoint_url=endpoint, region_name="us-east-1")
    names = [f"app-{index:04}" for index in range(count)]
    for name in names:
        client.create_application(applicationName=name)
    pages = list(client.get_paginator("list_applications").paginate())
    listed = [name for page in pages for name in page["applications"]]
    if sorted(listed) != names or len(pages) < 2:
        print(f"{len(pages)} pages, {len(listed)} names, {len(set(listed))} distinct")
        sys.exit(1)
    print(f"{len(pages)} pages, {len(listed)} names")


if __name__ == "__main__":
    main()
