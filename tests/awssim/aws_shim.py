"""`aws` on the simulated worker: the subset of AWS CLI v2 the app's S3-mode command uses, done
with boto3 against the simulator ($AWS_ENDPOINT_URL in the sandbox's environment).

    aws s3 cp [--only-show-errors] [--recursive] SRC DST
    aws ec2 create-tags [--region R] --resources ID... --tags Key=K,Value=V...

SRC and DST are a local path, `-` (stdin / stdout, single objects only) or `s3://bucket/key`.
As the real CLI: a copy to a key or folder ending in `/` keeps the source's base name; a
recursive download creates folders and sets each file's modification time to the object's
LastModified. Anything else (another command, an option it does not know) is refused with exit
code 2, so the app's scripts cannot rely on something this shim would silently not do.

With `<sandbox>/s3-upload-dies` present, a recursive upload sends one file, then halts the
instance (the `poweroff` shim) and hangs until the halt kills it: a worker that dies mid-upload.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config

USAGE = 2
FAILED = 1
KNOWN_FLAGS = {"--only-show-errors", "--recursive"}


class Usage(Exception):
    """A command line this shim does not implement."""


def split_url(url: str) -> tuple[str, str]:
    bucket, _, key = url[len("s3://") :].partition("/")
    if not bucket:
        raise Usage(f"not an S3 URL: {url}")
    return bucket, key


def client() -> Any:
    """boto3 on the simulator only: dummy credentials unless the environment has some, and
    never the instance metadata service (botocore would look there for credentials)."""
    os.environ["AWS_EC2_METADATA_DISABLED"] = "true"
    return boto3.client(
        "s3",
        endpoint_url=os.environ["AWS_ENDPOINT_URL"],
        region_name=os.environ.get("AWS_DEFAULT_REGION", "us-east-1"),
        aws_access_key_id=os.environ.get("AWS_ACCESS_KEY_ID", "testing"),
        aws_secret_access_key=os.environ.get("AWS_SECRET_ACCESS_KEY", "testing"),
        config=Config(retries={"mode": "standard", "max_attempts": 3}),
    )


def dies_uploading() -> bool:
    return (Path(os.environ["AWSSIM_SANDBOX"]) / "s3-upload-dies").exists()


def die() -> None:
    subprocess.run(["poweroff"], check=False)
    while True:
        time.sleep(1)


def upload_tree(s3: Any, folder: Path, url: str) -> None:
    bucket, prefix = split_url(url)
    prefix = prefix if not prefix or prefix.endswith("/") else prefix + "/"
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    for n, path in enumerate(files):
        if n == 1 and dies_uploading():
            die()
        key = prefix + path.relative_to(folder).as_posix()
        s3.upload_file(str(path), bucket, key)


def download_tree(s3: Any, url: str, folder: Path) -> None:
    bucket, prefix = split_url(url)
    prefix = prefix if not prefix or prefix.endswith("/") else prefix + "/"
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    for page in pages:
        for item in page.get("Contents", []):
            relative = item["Key"][len(prefix) :]
            if not relative or relative.endswith("/"):
                continue
            target = folder / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            s3.download_file(bucket, item["Key"], str(target))
            stamp = item["LastModified"].timestamp()
            os.utime(target, (stamp, stamp))


def copy_one(s3: Any, source: str, target: str) -> None:
    if source.startswith("s3://") and target.startswith("s3://"):
        raise Usage("S3 to S3 copies are not implemented")
    if target.startswith("s3://"):
        bucket, key = split_url(target)
        if source == "-":
            s3.put_object(Bucket=bucket, Key=key, Body=sys.stdin.buffer.read())
            return
        if not key or key.endswith("/"):
            key += Path(source).name
        s3.upload_file(source, bucket, key)
        return
    if not source.startswith("s3://"):
        raise Usage("one of SRC and DST must be an S3 URL")
    bucket, key = split_url(source)
    if target == "-":
        body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        sys.stdout.buffer.write(body)
        return
    path = Path(target)
    if target.endswith("/") or path.is_dir():
        path = path / key.rsplit("/", 1)[-1]
    path.parent.mkdir(parents=True, exist_ok=True)
    s3.download_file(bucket, key, str(path))


def cp(args: list[str]) -> None:
    flags = {a for a in args if a.startswith("--")}
    unknown = flags - KNOWN_FLAGS
    if unknown:
        raise Usage(f"option(s) not implemented: {', '.join(sorted(unknown))}")
    paths = [a for a in args if not a.startswith("--")]
    if len(paths) != 2:
        raise Usage("cp takes SRC and DST")
    source, target = paths
    s3 = client()
    if "--recursive" not in flags:
        copy_one(s3, source, target)
    elif "-" in paths:
        raise Usage("--recursive does not take '-'")
    elif target.startswith("s3://") and not source.startswith("s3://"):
        upload_tree(s3, Path(source), target)
    elif source.startswith("s3://") and not target.startswith("s3://"):
        download_tree(s3, source, Path(target))
    else:
        raise Usage("--recursive copies between a folder and an S3 prefix only")


def ec2_create_tags(args: list[str]) -> None:
    """A scheduled run's worker tags itself (its job id and deadline)."""
    options: dict[str, list[str]] = {}
    current = None
    for arg in args:
        if arg in ("--region", "--resources", "--tags"):
            current = options.setdefault(arg, [])
        elif current is None or (arg.startswith("--")):
            raise Usage(f"create-tags: not implemented: {arg}")
        else:
            current.append(arg)
    if not options.get("--resources") or not options.get("--tags"):
        raise Usage("create-tags takes --resources and --tags")
    pairs = [dict(p.split("=", 1) for p in tag.split(",")) for tag in options["--tags"]]
    if any(set(pair) != {"Key", "Value"} for pair in pairs):
        raise Usage("a tag is Key=...,Value=...")
    region = (options.get("--region") or [os.environ.get("AWS_DEFAULT_REGION", "us-east-1")])[0]
    ec2 = boto3.client("ec2", endpoint_url=os.environ["AWS_ENDPOINT_URL"], region_name=region)
    ec2.create_tags(Resources=options["--resources"], Tags=pairs)


def main(argv: list[str]) -> int:
    try:
        if argv[:2] == ["ec2", "create-tags"]:
            ec2_create_tags(argv[2:])
            return 0
        if argv[:2] != ["s3", "cp"]:
            raise Usage(f"not implemented: aws {' '.join(argv[:2])}")
        cp(argv[2:])
    except Usage as error:
        print(f"aws (simulated): {error}", file=sys.stderr)
        return USAGE
    except Exception as error:  # the CLI's own failures: a message and exit code 1
        print(f"aws (simulated): {type(error).__name__}: {error}", file=sys.stderr)
        return FAILED
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
