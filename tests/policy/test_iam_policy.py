"""The README's IAM policy allows every AWS action the server's code calls.

The actions are read from the code itself (every call of a boto operation on an AWS client, and
every paginator/waiter named), so a new call without a policy statement fails here instead of
failing a user's first job with AccessDenied. The S3 mode's staging (`awsjobs_lab/staging/`)
runs with the server's credentials too and is scanned. Left out on purpose, as the README says
they run with the user's own credentials: the image builder (`awsjobs build-image`, as an
administrator) and the bucket's lifecycle rule (`awsjobs s3-lifecycle`, whose two actions the
README names beside the command: checked below).
"""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore import xform_name
from botocore.session import get_session

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
PACKAGE = ROOT / "awsjobs_lab"
# Modules that run with the Jupyter server's credentials. The image builder and the lifecycle
# command are not among them (administrator's commands, with the user's own credentials).
SERVER_CODE = [PACKAGE / "aws", PACKAGE / "backends", PACKAGE / "staging"]
LIFECYCLE_COMMAND = PACKAGE / "staging" / "lifecycle.py"
NOT_SERVER_CODE = {"image.py", LIFECYCLE_COMMAND.name}
LIFECYCLE_HEADING = "**Lifecycle.**"
SERVICES = ("ec2", "ssm", "pricing", "s3", "scheduler")
POLICY_HEADING = "### 6. IAM permissions of the Jupyter server"

# Resource types a RunInstances call touches (AWS's list for the action, as used here): the
# policy must name each, or AWS refuses the launch. Spot launches add the spot request; EC2
# Fleet's RunInstances on our behalf adds the launch template.
RUN_INSTANCES_RESOURCES = (
    "instance/",
    "volume/",
    "image/",
    "subnet/",
    "network-interface/",
    "security-group/",
    "spot-instances-request/",
    "launch-template/",
)
# What a CreateFleet call touches: the fleet itself, and all its RunInstances touch.
CREATE_FLEET_RESOURCES = ("fleet/", *RUN_INSTANCES_RESOURCES)


# S3's IAM actions are not always its operations' names (AWS's list of S3 actions). A copy needs
# s3:GetObject on its source as well (a blob under the same prefix here).
S3_ACTIONS: dict[str, tuple[str, ...]] = {
    "HeadObject": ("GetObject",),
    "ListObjectsV2": ("ListBucket",),
    "ListObjects": ("ListBucket",),
    "DeleteObjects": ("DeleteObject",),
    "ListMultipartUploads": ("ListBucketMultipartUploads",),
    "ListParts": ("ListMultipartUploadParts",),
    "CopyObject": ("PutObject", "GetObject"),
    "CreateMultipartUpload": ("PutObject",),
    "UploadPart": ("PutObject",),
    "UploadPartCopy": ("PutObject", "GetObject"),
    "CompleteMultipartUpload": ("PutObject",),
    "GetBucketLifecycleConfiguration": ("GetLifecycleConfiguration",),
    "PutBucketLifecycleConfiguration": ("PutLifecycleConfiguration",),
}
# The only S3 actions AWS gives the `s3:prefix` condition key (a statement conditioned on it
# allows no other action: the key is absent from their requests, so the condition fails).
S3_PREFIX_CONDITION_ACTIONS = {"s3:ListBucket", "s3:ListBucketVersions"}


def _operations() -> dict[str, list[str]]:
    """snake_case operation name → the `service:Action` names it can be."""
    session = get_session()
    found: dict[str, list[str]] = {}
    for service in SERVICES:
        model = session.get_service_model(service)
        prefix = model.signing_name if service != "scheduler" else "scheduler"
        for name in model.operation_names:
            actions = S3_ACTIONS.get(name, (name,)) if service == "s3" else (name,)
            found.setdefault(xform_name(name), []).extend(f"{prefix}:{a}" for a in actions)
    return found


def _receiver(node: ast.expr) -> str:
    """The name a method is called on (`ec2` in `ec2.run_instances(...)`), or ''."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    return ""


def _calls(tree: ast.AST) -> Iterator[tuple[str, str]]:
    """(receiver, operation) of every method call and named paginator/waiter in `tree`."""
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Attribute):
            continue
        receiver = _receiver(node.func.value)
        if receiver == "self":
            continue  # our own methods (e.g. EC2Backend.terminate_instances), not AWS calls
        name = node.func.attr
        if name in ("get_paginator", "get_waiter") and node.args:
            first = node.args[0]
            if isinstance(first, ast.Constant) and isinstance(first.value, str):
                yield receiver, first.value
        else:
            yield receiver, name


def _actions_in(path: Path, operations: dict[str, list[str]]) -> Iterator[str]:
    """The `service:Action` names the calls in one file need."""
    for receiver, name in _calls(ast.parse(path.read_text("utf-8"))):
        candidates = operations.get(name, [])
        chosen = [a for a in candidates if a.split(":")[0] in receiver.lower()]
        services = {a.split(":")[0] for a in candidates}
        yield from chosen or (candidates if len(services) == 1 else [])


def called_actions() -> dict[str, set[str]]:
    """`service:Action` → the files that call it."""
    operations = _operations()
    actions: dict[str, set[str]] = {}
    for folder in SERVER_CODE:
        for path in sorted(folder.rglob("*.py")):
            if path.name in NOT_SERVER_CODE:
                continue
            for action in _actions_in(path, operations):
                actions.setdefault(action, set()).add(str(path.relative_to(ROOT)))
    return actions


def readme_policy() -> dict[str, Any]:
    text = README.read_text("utf-8")
    section = text[text.index(POLICY_HEADING) :]
    block = re.search(r"```json\n(.*?)```", section, re.S)
    assert block, f"no JSON policy under {POLICY_HEADING!r} in README.md"
    policy = json.loads(block.group(1))
    assert isinstance(policy, dict)
    return policy


def _as_list(value: Any) -> list[str]:
    return [value] if isinstance(value, str) else [str(v) for v in value or []]


def statements_allowing(policy: dict[str, Any], action: str) -> list[dict[str, Any]]:
    found = []
    for statement in policy["Statement"]:
        if statement.get("Effect") != "Allow":
            continue
        for pattern in _as_list(statement.get("Action")):
            if re.fullmatch(re.escape(pattern).replace(r"\*", ".*"), action):
                found.append(statement)
                break
    return found


def test_the_scan_finds_the_calls_we_know_of() -> None:
    # Guards the scanner itself: if it found nothing, the coverage test below would pass.
    actions = called_actions()
    for known in (
        "ec2:CreateFleet",
        "ec2:TerminateInstances",
        "ssm:SendCommand",
        "ec2:DescribeInstances",
        "pricing:GetProducts",
        "scheduler:CreateSchedule",
        "scheduler:DeleteScheduleGroup",
        "s3:ListMultipartUploadParts",  # staging/upload.py only
    ):
        assert known in actions, f"the scan no longer finds {known}"
    # The staging's copies read their source: CopyObject needs s3:GetObject too.
    assert "awsjobs_lab/staging/upload.py" in actions["s3:GetObject"]


@pytest.mark.parametrize("action", sorted(called_actions()))
def test_readme_policy_allows_every_action_the_server_calls(action: str) -> None:
    where = ", ".join(sorted(called_actions()[action]))
    assert statements_allowing(readme_policy(), action), (
        f"{action} (called in {where}) is allowed by no statement of README.md's IAM policy"
    )


@pytest.mark.parametrize(
    ("action", "kinds"),
    [("ec2:RunInstances", RUN_INSTANCES_RESOURCES), ("ec2:CreateFleet", CREATE_FLEET_RESOURCES)],
)
def test_launch_actions_name_every_resource_a_launch_touches(
    action: str, kinds: tuple[str, ...]
) -> None:
    resources = [
        resource
        for statement in statements_allowing(readme_policy(), action)
        for resource in _as_list(statement.get("Resource"))
    ]
    for kind in kinds:
        assert any(f":{kind}" in r or r == "*" for r in resources), (
            f"{action} needs the {kind.rstrip('/')} resource in README.md's policy "
            "(AWS refuses the launch otherwise)"
        )


def test_get_parameter_allows_the_users_own_image_parameter() -> None:
    # c.EC2Backend.image_ssm_parameter may name a parameter of the user's own account.
    resources = [
        resource
        for statement in statements_allowing(readme_policy(), "ssm:GetParameter")
        for resource in _as_list(statement.get("Resource"))
    ]
    assert any(":ACCOUNT:parameter/" in r or r == "*" for r in resources)
    assert any("parameter/aws/service/" in r or r == "*" for r in resources)


def test_the_scheduler_role_may_be_passed_to_eventbridge_scheduler_only() -> None:
    # CreateSchedule/UpdateSchedule pass c.EC2Backend.scheduler_role_arn: AWS checks
    # iam:PassRole on it for the caller.
    passing = [
        statement
        for statement in statements_allowing(readme_policy(), "iam:PassRole")
        if any(r.endswith(":role/awsjobs-scheduler") for r in _as_list(statement.get("Resource")))
    ]
    assert passing, "no statement lets the server pass the scheduler role"
    for statement in passing:
        condition = statement.get("Condition", {}).get("StringEquals", {})
        assert condition.get("iam:PassedToService") == "scheduler.amazonaws.com"


def test_schedule_actions_are_confined_to_our_groups() -> None:
    for action in ("scheduler:CreateSchedule", "scheduler:DeleteScheduleGroup"):
        resources = [
            resource
            for statement in statements_allowing(readme_policy(), action)
            for resource in _as_list(statement.get("Resource"))
        ]
        assert resources and all("awsjobs-" in r for r in resources), (action, resources)


def _s3_statements(policy: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        statement
        for statement in policy["Statement"]
        if any(a.startswith("s3:") for a in _as_list(statement.get("Action")))
    ]


def test_s3_statements_are_confined_to_the_bucket_and_prefix() -> None:
    statements = _s3_statements(readme_policy())
    assert statements
    for statement in statements:
        resources = _as_list(statement.get("Resource"))
        assert resources, statement
        for resource in resources:
            assert resource.startswith("arn:aws:s3:::BUCKET"), (statement.get("Sid"), resource)
            assert resource == "arn:aws:s3:::BUCKET" or resource.startswith(
                "arn:aws:s3:::BUCKET/awsjobs/"
            ), (statement.get("Sid"), resource)


def test_s3_prefix_conditions_only_on_the_actions_that_carry_the_key() -> None:
    # ListBucketMultipartUploads on the bucket cannot be confined by s3:prefix: under such a
    # condition AWS would refuse the upload's resume look with AccessDenied.
    for statement in _s3_statements(readme_policy()):
        if "s3:prefix" in json.dumps(statement.get("Condition", {})):
            actions = set(_as_list(statement.get("Action")))
            assert actions <= S3_PREFIX_CONDITION_ACTIONS, (statement.get("Sid"), actions)


def test_readme_names_the_lifecycle_commands_actions() -> None:
    # `awsjobs s3-lifecycle` runs with the user's credentials: the README says which actions.
    operations = _operations()
    text = README.read_text("utf-8")
    section = text[text.index(LIFECYCLE_HEADING) :].split("\n\n", 1)[0]
    actions = set(_actions_in(LIFECYCLE_COMMAND, operations))
    assert actions == {"s3:GetLifecycleConfiguration", "s3:PutLifecycleConfiguration"}
    for action in actions:
        assert f"`{action}`" in section, f"README's lifecycle paragraph does not name {action}"
