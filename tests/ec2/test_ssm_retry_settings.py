"""What `c.EC2Backend.ssm_retry_seconds` and `ssm_retry_max_seconds` say, and what SendCommand's
retries do (`aws/ssm.send_until_registered` with the backend's pauses): a steady cadence while
the agent registers, a backoff capped by the maximum only while SSM throttles. No AWS: a fake
SSM client answers, and the pauses are recorded instead of slept."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import ClientError

from awsjobs_lab.aws import ssm
from awsjobs_lab.aws.clients import backoff_delay
from awsjobs_lab.backends.ec2.settings import EC2Settings

NOT_REGISTERED = 8
THROTTLED = 6


class FakeSSM:
    """InvalidInstanceId a few times (the agent registering), then ThrottlingException a few
    times, then the command is accepted."""

    def __init__(self) -> None:
        self.answers = ["InvalidInstanceId"] * NOT_REGISTERED + ["ThrottlingException"] * THROTTLED

    async def send_command(self, **_: Any) -> dict[str, Any]:
        if self.answers:
            code = self.answers.pop(0)
            raise ClientError({"Error": {"Code": code, "Message": code}}, "SendCommand")
        return {"Command": {"CommandId": "cmd-1"}}


def trait(name: str) -> Any:
    return EC2Settings.class_traits()[name]


def test_the_help_texts_describe_a_steady_cadence_and_a_throttling_cap() -> None:
    cadence, cap = trait("ssm_retry_seconds").help, trait("ssm_retry_max_seconds").help
    assert "steady cadence that does not grow" in cadence
    assert "First pause" not in cadence
    assert "throttles" in cap and "not capped by it" in cap


async def test_registration_waits_at_the_cadence_and_only_throttling_backs_off(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cadence = float(trait("ssm_retry_seconds").default_value)
    cap = float(trait("ssm_retry_max_seconds").default_value)
    slept: list[float] = []

    async def recorded(seconds: float) -> None:
        slept.append(seconds)

    monkeypatch.setattr(ssm.asyncio, "sleep", recorded)
    command = await ssm.send_until_registered(
        FakeSSM(),
        "i-0123456789abcdef0",
        lambda: {},
        timeout_seconds=3600,
        pause=lambda _: cadence,
        throttled_pause=lambda n: backoff_delay(n, cadence, cap),
    )
    assert command == "cmd-1"
    registering, throttled = slept[:NOT_REGISTERED], slept[NOT_REGISTERED:]
    assert registering == [cadence] * NOT_REGISTERED  # never growing, never capped
    assert len(throttled) == THROTTLED
    assert all(cadence / 2 <= s <= min(cap, cadence * 2**n) for n, s in enumerate(throttled, 1))
