"""The bucket's lifecycle rule and `awsjobs s3-lifecycle`, the command that sets it: what jobs
left under the prefix (the owners' shared blobs, areas of jobs never removed) expires after N
days, and unfinished multipart uploads are aborted after a day. Set with the user's own
credentials (the server never calls it: its IAM policy needs no lifecycle permission)."""

from __future__ import annotations

import argparse
import asyncio
import json
from typing import Any, TextIO

from botocore.exceptions import ClientError

from ..aws.clients import shared_session
from ..aws.errors import aws_errors, error_code
from ..errors import BackendError
from .area import DEFAULT_PREFIX, normalise_prefix

LIFECYCLE_RULE_ID = "awsjobs-expire"


def expiry_rule(prefix: str, days: int) -> dict[str, Any]:
    """The lifecycle rule that expires this tool's objects under `prefix` after `days` days and
    aborts multipart uploads left unfinished for a day."""
    return {
        "ID": LIFECYCLE_RULE_ID,
        "Filter": {"Prefix": prefix},
        "Status": "Enabled",
        "Expiration": {"Days": days},
        "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 1},
    }


async def put_lifecycle_rule(s3: Any, bucket: str, prefix: str, days: int) -> None:
    """Set the rule `awsjobs-expire` on `bucket` (see `expiry_rule`), keeping the bucket's
    other rules (an earlier `awsjobs-expire` is replaced)."""
    if days < 1:
        raise ValueError("the lifecycle rule needs at least 1 day")
    with aws_errors(f"GetBucketLifecycleConfiguration s3://{bucket}"):
        try:
            answer = await s3.get_bucket_lifecycle_configuration(Bucket=bucket)
            rules = [r for r in answer.get("Rules", []) if r.get("ID") != LIFECYCLE_RULE_ID]
        except ClientError as exc:
            if error_code(exc) != "NoSuchLifecycleConfiguration":
                raise
            rules = []
    rules.append(expiry_rule(prefix, days))
    with aws_errors(f"PutBucketLifecycleConfiguration s3://{bucket}"):
        await s3.put_bucket_lifecycle_configuration(
            Bucket=bucket, LifecycleConfiguration={"Rules": rules}
        )


def _days(text: str) -> int:
    try:
        days = int(text)
    except ValueError:
        days = 0
    if days < 1:
        raise argparse.ArgumentTypeError(f"a whole number of days, at least 1: {text!r}")
    return days


def add_lifecycle_parser(
    sub: Any, common: argparse.ArgumentParser, formatter: type[argparse.HelpFormatter]
) -> None:
    p = sub.add_parser(
        "s3-lifecycle",
        parents=[common],
        formatter_class=formatter,
        help="expire what S3-mode jobs leave in the bucket after N days (no server needed)",
        description="Set the lifecycle rule 'awsjobs-expire' on BUCKET: objects under PREFIX "
        "expire DAYS days after they were written, and multipart uploads left unfinished are "
        "aborted after 1 day. The bucket's other rules are kept; an earlier 'awsjobs-expire' is "
        "replaced. Uses your AWS credentials (AWS_PROFILE, AWS_REGION, ...); needs "
        "s3:GetLifecycleConfiguration and s3:PutLifecycleConfiguration on the bucket.",
        epilog="""\
examples:
  awsjobs s3-lifecycle --bucket my-team-jobs --days 14
  awsjobs s3-lifecycle --bucket my-team-jobs --prefix awsjobs/ --days 30
""",
    )
    p.add_argument("--bucket", required=True, metavar="BUCKET", help="the S3 bucket")
    p.add_argument(
        "--prefix",
        default=DEFAULT_PREFIX,
        metavar="PREFIX",
        help=f"the key prefix jobs use (c.EC2Backend.s3_prefix; default {DEFAULT_PREFIX})",
    )
    p.add_argument(
        "--days", required=True, type=_days, metavar="N", help="expire objects after N days"
    )
    p.add_argument("--region", metavar="REGION", help="the bucket's region (default: AWS_REGION)")
    p.add_argument("--endpoint-url", metavar="URL", help=argparse.SUPPRESS)
    p.set_defaults(func=cmd_s3_lifecycle)


def cmd_s3_lifecycle(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from ..cli import EXIT_JOB_FAILED, EXIT_OK  # here: the server imports this module too

    prefix = normalise_prefix(args.prefix)
    try:
        asyncio.run(_put_rule(args, prefix))
    except BackendError as e:
        err.write(f"awsjobs s3-lifecycle: {e}\n")
        return EXIT_JOB_FAILED
    if args.json:
        out.write(json.dumps({"bucket": args.bucket, "rule": expiry_rule(prefix, args.days)}))
        out.write("\n")
    else:
        out.write(
            f"s3://{args.bucket}: objects under '{prefix}' expire after {args.days} day(s); "
            "unfinished multipart uploads are aborted after 1 day (rule awsjobs-expire).\n"
        )
    return EXIT_OK


async def _put_rule(args: argparse.Namespace, prefix: str) -> None:
    kwargs: dict[str, Any] = {}
    if args.region:
        kwargs["region_name"] = args.region
    if args.endpoint_url:
        kwargs["endpoint_url"] = args.endpoint_url
    async with shared_session().create_client("s3", **kwargs) as s3:
        await put_lifecycle_rule(s3, args.bucket, prefix, args.days)
