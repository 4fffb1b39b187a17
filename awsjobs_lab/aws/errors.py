"""AWS errors: their code and message, throttling, and the one place they become `BackendError`.

Every call that may fail on AWS's side runs under `aws_errors("what we were doing")`: a
`ClientError` (AWS answered with an error) or `BotoCoreError` (no credentials, no network, ...)
leaves it as a `BackendError` (HTTP 502) whose message says what failed and what AWS said.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from botocore.exceptions import BotoCoreError, ClientError

from ..errors import BackendError

# What botocore raises for AWS's own answers and for failures before an answer.
AWS_ERRORS = (ClientError, BotoCoreError)

# Error codes that mean "slow down" rather than "wrong".
THROTTLING_CODES = frozenset(
    {
        "RequestLimitExceeded",
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "TooManyRequestsException",
        "RequestThrottled",
        "RequestThrottledException",
    }
)


def error_code(exc: BaseException) -> str:
    """The AWS error code of a ClientError ('' for anything else)."""
    if isinstance(exc, ClientError):
        return str(exc.response.get("Error", {}).get("Code", ""))
    return ""


def error_message(exc: BaseException) -> str:
    """'Code: message' of a ClientError; the text of anything else."""
    if isinstance(exc, ClientError):
        err = exc.response.get("Error", {})
        return f"{err.get('Code', '')}: {err.get('Message', '')}".strip(": ")
    return str(exc) or type(exc).__name__


def is_throttling(exc: BaseException) -> bool:
    return error_code(exc) in THROTTLING_CODES


@contextlib.contextmanager
def aws_errors(doing: str) -> Iterator[None]:
    """Turn an AWS error raised in the block into `BackendError("<doing>: <AWS's message>")`.

    `doing` names the step for a person reading the job's error ("TerminateInstances",
    "choosing an instance type"). Works around `await`s: `with aws_errors("..."): await ...`.
    """
    try:
        yield
    except AWS_ERRORS as exc:
        raise BackendError(f"{doing}: {error_message(exc)}") from exc
