"""EventBridge Scheduler firing, which moto does not do: moto stores schedules (CreateSchedule,
GetSchedule, UpdateSchedule, DeleteSchedule, ListSchedules, the schedule groups and their
tags) but never performs a target.

`fire(simulator, group, name)` does what AWS does when the schedule's time comes: it performs
the target with the input stored in the schedule, as the execution role would. Served target:
the universal target `arn:aws:scheduler:::aws-sdk:ec2:runInstances`, its input the
RunInstances request in the API's names (`UserData` base64-encoded, as the API takes it). The
call goes through the simulator's own endpoint like any client's, so the instance is launched,
boots and runs its user data in its sandbox (when the worker is enabled). As on AWS, a
disabled schedule does not fire, and the execution role must exist (in moto's IAM).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from typing import Any

import boto3
from botocore.exceptions import ClientError
from moto.iam.models import iam_backends
from moto.scheduler.models import Schedule, scheduler_backends

RUN_INSTANCES = "arn:aws:scheduler:::aws-sdk:ec2:runInstances"
# The trust policy of an execution role, for tests that make one in moto's IAM.
EXECUTION_ROLE_TRUST = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Effect": "Allow",
            "Principal": {"Service": "scheduler.amazonaws.com"},
            "Action": "sts:AssumeRole",
        }
    ],
}


class UnknownSchedule(KeyError):
    pass


def find(group: str, name: str) -> tuple[str, str, Schedule]:
    """(account, region, schedule) of a stored schedule."""
    for account, regions in scheduler_backends.items():
        for region, backend in regions.items():
            found = backend.schedule_groups.get(group)
            if found is not None and name in found.schedules:
                return account, region, found.schedules[name]
    raise UnknownSchedule(f"{group}/{name}")


def _role_exists(account: str, role_arn: str) -> bool:
    partition = role_arn.split(":")[1] if role_arn.count(":") >= 5 else "aws"
    backend = iam_backends[account][partition]
    return any(role.arn == role_arn for role in backend.get_roles())


def run_instances_request(target: Mapping[str, Any]) -> dict[str, Any]:
    """The target's input as boto3's run_instances arguments (boto3 encodes UserData itself)."""
    if target.get("Arn") != RUN_INSTANCES:
        raise ValueError(f"target {target.get('Arn')} is not served (only {RUN_INSTANCES})")
    params = json.loads(target.get("Input") or "{}")
    if not isinstance(params, dict):
        raise ValueError("the target's input is not a JSON object")
    if "UserData" in params:
        params["UserData"] = base64.b64decode(params["UserData"]).decode("utf-8")
    return params


def fire(lock: Any, endpoint_url: str, group: str, name: str) -> dict[str, Any]:
    """Perform the schedule's target now; the instances it launched. `lock`: the simulator's,
    held while moto's models are read, not during the call (which takes it)."""
    with lock:
        account, region, schedule = find(group, name)
        if schedule.state == "DISABLED":
            raise ValueError(f"schedule {group}/{name} is disabled: AWS would not fire it")
        target = dict(schedule.target)
        if not _role_exists(account, str(target.get("RoleArn", ""))):
            raise ValueError(f"the execution role {target.get('RoleArn')!r} does not exist")
        params = run_instances_request(target)
    ec2 = boto3.client(
        "ec2",
        region_name=region,
        endpoint_url=endpoint_url,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    try:
        answer = ec2.run_instances(**params)
    except ClientError as error:  # AWS would retry by the RetryPolicy, then drop the firing
        raise ValueError(f"the target of {group}/{name} failed: {error}") from error
    return {"instance_ids": [i["InstanceId"] for i in answer.get("Instances", [])]}
