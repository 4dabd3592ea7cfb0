#!/bin/sh
# Bitbucket Pipelines' deploy step for Gantry (examples/bitbucket-pipelines.yml calls it):
# bundles a revision directory of the checkout, uploads it to the stack's bundle bucket
# under the commit's id, registers it, deploys it to a group and follows the deployment.
# The step fails unless the deployment succeeds.
#
#   sh deploy.sh REVISION_DIR      (relative to the checkout, BITBUCKET_CLONE_DIR)
#
# Repository (or deployment) variables it reads:
#   GANTRY_STACK    the stack's Prefix: its functions are <stack>-push, <stack>-api, ...
#   GANTRY_APP      the application
#   GANTRY_GROUP    the deployment group
#   GANTRY_BUCKET   the stack's bundle bucket (the BundleBucketName output)
#   GANTRY_PREFIX   optional: the key prefix, under the stack's RevisionPrefix
#                   (default revisions/<GANTRY_APP>/); the key is <prefix><commit>.tgz
#   AWS_REGION      the stack's region
#   credentials, either
#     AWS_ROLE_ARN  a role the step assumes with Bitbucket's OpenID Connect token
#                   (the step has `oidc: true`), or
#     AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (secured variables)
# and Bitbucket's own: BITBUCKET_CLONE_DIR, BITBUCKET_COMMIT (BITBUCKET_REPO_FULL_NAME
# and BITBUCKET_BUILD_NUMBER, when set, go into the descriptions).
set -eu

fail() {
  echo "gantry deploy step: $*" >&2
  exit 1
}

missing=""
for name in GANTRY_STACK GANTRY_APP GANTRY_GROUP GANTRY_BUCKET BITBUCKET_CLONE_DIR BITBUCKET_COMMIT; do
  eval "value=\${$name:-}"
  # shellcheck disable=SC2154 # set by the eval above
  [ -n "$value" ] || missing="$missing $name"
done
if [ -z "${AWS_REGION:-}" ] && [ -z "${AWS_DEFAULT_REGION:-}" ]; then
  missing="$missing AWS_REGION"
fi
if [ -z "${AWS_ROLE_ARN:-}" ]; then
  [ -n "${AWS_ACCESS_KEY_ID:-}" ] || missing="$missing AWS_ACCESS_KEY_ID"
  [ -n "${AWS_SECRET_ACCESS_KEY:-}" ] || missing="$missing AWS_SECRET_ACCESS_KEY"
  case "$missing" in
    *AWS_ACCESS_KEY_ID* | *AWS_SECRET_ACCESS_KEY*)
      missing="$missing (or AWS_ROLE_ARN, for OpenID Connect)" ;;
  esac
fi
[ -z "$missing" ] || fail "set these repository variables:$missing"

[ "$#" -eq 1 ] || fail "usage: deploy.sh REVISION_DIR (relative to BITBUCKET_CLONE_DIR)"
revision_dir="$BITBUCKET_CLONE_DIR/$1"
[ -f "$revision_dir/appspec.yml" ] || fail "$1: no appspec.yml in $revision_dir"

command -v gantry >/dev/null 2>&1 || fail "the gantry CLI is not on PATH"

# OpenID Connect: the AWS SDK assumes AWS_ROLE_ARN with the token in this file.
if [ -n "${AWS_ROLE_ARN:-}" ]; then
  [ -n "${BITBUCKET_STEP_OIDC_TOKEN:-}" ] ||
    fail "AWS_ROLE_ARN is set but BITBUCKET_STEP_OIDC_TOKEN is not: give the step \`oidc: true\`"
  AWS_WEB_IDENTITY_TOKEN_FILE="$(mktemp)"
  trap 'rm -f "$AWS_WEB_IDENTITY_TOKEN_FILE"' EXIT
  printf '%s' "$BITBUCKET_STEP_OIDC_TOKEN" >"$AWS_WEB_IDENTITY_TOKEN_FILE"
  export AWS_WEB_IDENTITY_TOKEN_FILE
  export AWS_ROLE_SESSION_NAME="${AWS_ROLE_SESSION_NAME:-bitbucket-${BITBUCKET_BUILD_NUMBER:-build}}"
fi

prefix="${GANTRY_PREFIX-revisions/$GANTRY_APP/}"
location="s3://$GANTRY_BUCKET/$prefix$BITBUCKET_COMMIT.tgz"
description="Bitbucket ${BITBUCKET_REPO_FULL_NAME:-repository} commit $BITBUCKET_COMMIT"
if [ -n "${BITBUCKET_BUILD_NUMBER:-}" ]; then
  description="$description, pipeline #$BITBUCKET_BUILD_NUMBER"
fi

echo "Pushing $1 to $location"
gantry push "$revision_dir" --app "$GANTRY_APP" --s3 "$location" --description "$description"

echo "Deploying $location to $GANTRY_APP/$GANTRY_GROUP"
gantry deploy --app "$GANTRY_APP" --group "$GANTRY_GROUP" --revision "$location" --description "$description"
