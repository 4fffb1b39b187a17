"""SSM as on AWS: the agent registers late, commands go only where they are sent and run in
the worker, invocations carry AWS's statuses; ListCommandInvocations, CancelCommand and
DescribeInstanceInformation (moto lacks them) are served from the simulator's state."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

from moto.core.responses import BaseResponse
from moto.ssm.models import SimpleSystemManagerBackend
from moto.ssm.responses import SimpleSystemManagerResponse

from .agent import Invocation
from .errors import Answer, error_answer, result_answer
from .world import PASS, Hook, World

Original = Callable[[], Answer]
MAX_EXECUTION_TIMEOUT = 172800  # AWS-RunShellScript's executionTimeout: 1 … 172800 seconds
LIST_OUTPUT_LIMIT = 2500  # ListCommandInvocations' plugin Output: the first 2,500 characters


def ssm_backend(response: BaseResponse) -> SimpleSystemManagerBackend:
    """The SSM backend of moto's response object (hooks are registered for SSM actions only)."""
    if not isinstance(response, SimpleSystemManagerResponse):
        raise TypeError(f"not an SSM call: {type(response).__name__}")
    return response.ssm_backend


class SsmHooks:
    def __init__(self, world: World) -> None:
        self.world = world

    def table(self) -> dict[str, Hook]:
        return {
            "SendCommand": self.send_command,
            "GetCommandInvocation": self.get_command_invocation,
            "ListCommandInvocations": self.list_command_invocations,
            "CancelCommand": self.cancel_command,
            "DescribeInstanceInformation": self.describe_instance_information,
        }

    def send_command(self, response: BaseResponse, original: Original) -> Answer:
        refused = self._invalid_timeout(response) or self._unregistered(response)
        if refused is not None:
            return refused
        answer = original()
        if answer[0] != 200:
            return answer
        backend = ssm_backend(response)
        command = backend.get_command_by_id(json.loads(answer[2])["Command"]["CommandId"])
        self.world.agent.track(command)
        self.world.visibility.created_invocation(command.command_id, self.world.config.consistency)
        # moto answered "Success" at once; AWS answers Pending.
        return result_answer(response, {"Command": command.response_object()})

    def _invalid_timeout(self, response: BaseResponse) -> Answer | None:
        values = (response._get_param("Parameters", {}) or {}).get("executionTimeout") or []
        for value in values:
            if not str(value).isdigit() or not 1 <= int(value) <= MAX_EXECUTION_TIMEOUT:
                return error_answer(
                    response,
                    "InvalidParameters",
                    f'Parameter "executionTimeout" "{value}" failed to satisfy constraint: '
                    f"a whole number of seconds from 1 to {MAX_EXECUTION_TIMEOUT}.",
                )
        return None

    def _unregistered(self, response: BaseResponse) -> Answer | None:
        """AWS answers InvalidInstanceId until the instance's agent has registered, and for
        an instance that is not running. A running managed instance whose agent is offline for
        a while (a reboot) takes the command: it stays Pending until delivered or timed out."""
        machines = self.world.fleet.machines
        ids = response._get_param("InstanceIds", []) or []
        bad = [
            i
            for i in ids
            if i not in machines or not machines[i].agent_seen or machines[i].state != "running"
        ]
        if not bad:
            return None
        self.world.record.fault("ssm", "SendCommand", "InvalidInstanceId")
        return error_answer(
            response,
            "InvalidInstanceId",
            f"Instances [[{', '.join(bad)}]] not in a valid state for account "
            f"{response.current_account}",
        )

    def get_command_invocation(self, response: BaseResponse, original: Original) -> Answer | None:
        command_id = response._get_param("CommandId") or ""
        if not self.world.visibility.not_found([command_id]):
            return PASS
        self.world.record.fault("ssm", "GetCommandInvocation", "InvocationDoesNotExist")
        return error_answer(response, "InvocationDoesNotExist")

    def list_command_invocations(self, response: BaseResponse, original: Original) -> Answer:
        command_id = response._get_param("CommandId")
        instance_id = response._get_param("InstanceId")
        details = bool(response._get_param("Details"))
        if command_id:
            ssm_backend(response).get_command_by_id(command_id)  # InvalidCommandId if unknown
        rows = [
            _invocation_row(invocation, details, response.region)
            for invocation in self.world.agent.invocations
            if (not command_id or invocation.command_id == command_id)
            and (not instance_id or invocation.instance_id == instance_id)
        ]
        return result_answer(response, {"CommandInvocations": rows})

    def cancel_command(self, response: BaseResponse, original: Original) -> Answer:
        command_id = response._get_param("CommandId") or ""
        ssm_backend(response).get_command_by_id(command_id)  # InvalidCommandId if unknown
        self.world.agent.cancel(command_id, response._get_param("InstanceIds", []) or [])
        return result_answer(response, {})

    def describe_instance_information(self, response: BaseResponse, original: Original) -> Answer:
        """Instances whose agent has registered: Online, or ConnectionLost while it is down
        (rebooting, stopped); terminated instances are not listed."""
        now = time.monotonic()
        wanted, pings = _information_filters(response)
        rows = []
        for machine in self.world.fleet.machines.values():
            if not machine.agent_seen or machine.state == "terminated":
                continue
            ping = "Online" if machine.registered(now) else "ConnectionLost"
            if (wanted and machine.instance_id not in wanted) or (pings and ping not in pings):
                continue
            rows.append(
                {
                    "InstanceId": machine.instance_id,
                    "PingStatus": ping,
                    "LastPingDateTime": datetime.now(timezone.utc),
                    "AgentVersion": "3.3.0.0",
                    "IsLatestVersion": False,
                    "PlatformType": "Linux",
                    "PlatformName": "Amazon Linux",
                    "ResourceType": "EC2Instance",
                }
            )
        return result_answer(response, {"InstanceInformationList": rows})


def _information_filters(response: BaseResponse) -> tuple[set[str], set[str]]:
    wanted: set[str] = set()
    pings: set[str] = set()
    for item in response._get_param("Filters", []) or []:
        target = wanted if item.get("Key") == "InstanceIds" else pings
        if item.get("Key") in ("InstanceIds", "PingStatus"):
            target.update(item.get("Values", []))
    for item in response._get_param("InstanceInformationFilterList", []) or []:
        if item.get("key") == "InstanceIds":
            wanted.update(item.get("valueSet", []))
        elif item.get("key") == "PingStatus":
            pings.update(item.get("valueSet", []))
    return wanted, pings


def _invocation_row(invocation: Invocation, details: bool, region: str) -> dict[str, Any]:
    fields = invocation.fields
    row: dict[str, Any] = {
        "CommandId": invocation.command_id,
        "InstanceId": invocation.instance_id,
        "Comment": fields.get("Comment", ""),
        "DocumentName": fields.get("DocumentName", ""),
        "RequestedDateTime": invocation.requested,
        "Status": fields["Status"],
        "StatusDetails": fields["StatusDetails"],
        "StandardOutputUrl": "",
        "StandardErrorUrl": "",
        "CommandPlugins": [],
    }
    if details:
        plugin: dict[str, Any] = {
            "Name": fields.get("PluginName", "aws:runShellScript"),
            "Status": fields["Status"],
            "StatusDetails": fields["StatusDetails"],
            "ResponseCode": fields["ResponseCode"],
            "Output": fields.get("StandardOutputContent", "")[:LIST_OUTPUT_LIMIT],
            "OutputS3Region": region,
        }
        if invocation.started is not None:
            plugin["ResponseStartDateTime"] = invocation.started
        if invocation.ended is not None:
            plugin["ResponseFinishDateTime"] = invocation.ended
        row["CommandPlugins"] = [plugin]
    return row
