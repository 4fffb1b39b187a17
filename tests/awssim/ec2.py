"""EC2 as AWS behaves and moto does not: consistency windows, capacity, ClientToken
idempotency, the instance lifecycle behind Run/Terminate/Stop/Start/Reboot, CreateImage's
reboot."""

from __future__ import annotations

import json
import time
from collections.abc import Callable

from moto.core.responses import BaseResponse
from moto.ec2.responses import EC2Response

from .capacity import LaunchAsk, quota_group, refusal, vcpus
from .errors import Answer, error_answer, result_answer
from .machines import GONE
from .world import PASS, Hook, World

Original = Callable[[], Answer]


def as_ec2(response: BaseResponse) -> EC2Response:
    """The EC2 side of moto's response object (hooks are registered for EC2 actions only)."""
    if not isinstance(response, EC2Response):
        raise TypeError(f"not an EC2 call: {type(response).__name__}")
    return response


def not_found_message(kind: str, ids: list[str]) -> str:
    if kind == "image":
        return f"The image id '[{', '.join(ids)}]' does not exist"
    if len(ids) == 1:
        return f"The instance ID '{ids[0]}' does not exist"
    return f"The instance IDs '{', '.join(ids)}' do not exist"


class Ec2Hooks:
    def __init__(self, world: World) -> None:
        self.world = world

    def table(self) -> dict[str, Hook]:
        return {
            "RunInstances": self.run_instances,
            "DescribeInstances": self.describe_instances,
            "TerminateInstances": self.terminate_instances,
            "StopInstances": self.stop_instances,
            "StartInstances": self.start_instances,
            "RebootInstances": self.reboot_instances,
            "CreateTags": self.create_tags,
            "CreateImage": self.create_image,
            "DescribeImages": self.describe_images,
            "DeregisterImage": self.deregister_image,
        }

    # -- consistency -------------------------------------------------------------------------
    def _hidden(self, response: BaseResponse, ids: list[str]) -> Answer | None:
        """NotFound for the ids AWS would not know yet (instances and AMIs)."""
        missing = self.world.visibility.not_found(ids)
        instances = [i for i in missing if i.startswith("i-")]
        images = [i for i in missing if i.startswith("ami-")]
        if not instances and not images:
            return None
        code, kind, ids = (
            ("InvalidInstanceID.NotFound", "instance", instances)
            if instances
            else ("InvalidAMIID.NotFound", "image", images)
        )
        self.world.record.fault("ec2", response._get_action(), code)
        return error_answer(response, code, not_found_message(kind, ids))

    def describe_instances(self, response: BaseResponse, original: Original) -> Answer | None:
        ids = response._get_param("InstanceIds", [])
        hidden = self._hidden(response, ids)
        if hidden is not None or ids:
            return hidden
        unlisted = self.world.visibility.unlisted()
        if not unlisted:
            return PASS
        backend = as_ec2(response).ec2_backend
        reservations = []
        for reservation in backend.describe_instances(
            filters=as_ec2(response)._filters_from_querystring()
        ):
            reservation.instances = [i for i in reservation.instances if i.id not in unlisted]
            if reservation.instances:
                reservations.append(reservation)
        return result_answer(response, {"Reservations": reservations})

    def describe_images(self, response: BaseResponse, original: Original) -> Answer | None:
        ids = response._get_param("ImageIds", [])
        hidden = self._hidden(response, ids)
        unlisted = self.world.visibility.unlisted()
        if hidden is not None or not unlisted:
            return hidden
        images = as_ec2(response).ec2_backend.describe_images(
            ami_ids=ids,
            filters=as_ec2(response)._filters_from_querystring(),
            exec_users=response._get_param("ExecutableUsers", []),
            owners=response._get_param("Owners", []),
        )
        return result_answer(response, {"Images": [i for i in images if i.id not in unlisted]})

    def create_tags(self, response: BaseResponse, original: Original) -> Answer | None:
        return self._hidden(response, response._get_param("Resources", []))

    def deregister_image(self, response: BaseResponse, original: Original) -> Answer | None:
        return self._hidden(response, [response._get_param("ImageId")])

    # -- launch ------------------------------------------------------------------------------
    def run_instances(self, response: BaseResponse, original: Original) -> Answer:
        token = response._get_param("ClientToken") or ""
        fingerprint = fingerprint_of(response)
        replay = self._replay(response, token, fingerprint) if token else None
        if replay is not None:
            return replay
        refused = self._hidden(response, [response._get_param("ImageId") or ""])
        refused = refused or self._refusal(response)
        if refused is not None:
            return refused
        backend = as_ec2(response).ec2_backend
        before = set(backend.reservations)
        answer = original()
        market = _market(response)
        for reservation_id in set(backend.reservations) - before:
            reservation = backend.reservations[reservation_id]
            for instance in reservation.instances:
                self.world.fleet.launched(
                    instance, response.current_account, response.region, market
                )
                self.world.visibility.created_instance(instance.id, self.world.config.consistency)
            if token:
                self.world.client_tokens[token] = (reservation_id, fingerprint)
        return answer

    def _replay(self, response: BaseResponse, token: str, fingerprint: str) -> Answer | None:
        """AWS: the same ClientToken returns the same reservation (a retry after a lost answer
        launches nothing new); with other parameters it is IdempotentParameterMismatch."""
        known = self.world.client_tokens.get(token)
        if known is None:
            return None
        reservation = as_ec2(response).ec2_backend.reservations.get(known[0])
        if reservation is None:  # moto was reset
            del self.world.client_tokens[token]
            return None
        if known[1] != fingerprint:
            return mismatch_answer(response)
        self.world.record.events["client-token-replay"] += 1
        return result_answer(response, reservation)

    def _refusal(self, response: BaseResponse) -> Answer | None:
        ask = LaunchAsk(
            instance_type=response._get_param("InstanceType") or "m1.small",
            zone=_zone(response),
            market=_market(response),
            count=int(response._get_param("MinCount") or 1),
        )
        code = self.refused(ask, "RunInstances")
        return None if code is None else error_answer(response, code)

    def refused(self, ask: LaunchAsk, action: str) -> str | None:
        """The capacity or quota error `ask` meets (recorded as a fault of `action`), if any."""
        code = refusal(ask, self.world.config.capacity, self._vcpus_in_use(ask))
        if code is not None:
            self.world.record.fault("ec2", action, code)
        return code

    def _vcpus_in_use(self, ask: LaunchAsk) -> int:
        group = quota_group(ask.instance_type)
        return sum(
            vcpus(m.life.instance_type)
            for m in self.world.fleet.machines.values()
            if m.state not in ("terminated", "stopped")
            and m.market == ask.market
            and quota_group(m.life.instance_type) == group
        )

    # -- lifecycle ---------------------------------------------------------------------------
    def terminate_instances(self, response: BaseResponse, original: Original) -> Answer:
        return self._lifecycle(response, original, self.world.fleet.api_terminated)

    def stop_instances(self, response: BaseResponse, original: Original) -> Answer:
        return self._lifecycle(response, original, self.world.fleet.api_stopped)

    def start_instances(self, response: BaseResponse, original: Original) -> Answer:
        return self._lifecycle(response, original, self.world.fleet.api_started)

    def reboot_instances(self, response: BaseResponse, original: Original) -> Answer:
        fleet = self.world.fleet

        def reboot(ids: list[str], now: float) -> None:
            for machine in fleet._known(ids):
                fleet.reboot(machine, now)

        return self._lifecycle(response, original, reboot)

    def _lifecycle(
        self,
        response: BaseResponse,
        original: Original,
        apply: Callable[[list[str], float], None],
    ) -> Answer:
        ids = response._get_param("InstanceIds", [])
        hidden = self._hidden(response, ids)
        if hidden is not None:
            return hidden
        answer = original()
        if answer[0] == 200:
            apply(ids, time.monotonic())
        return answer

    def create_image(self, response: BaseResponse, original: Original) -> Answer:
        """The new AMI id is invisible for a while; without NoReboot AWS reboots the instance
        (its processes and tmpfs are lost, its scheduled shutdown too)."""
        instance_id = response._get_param("InstanceId") or ""
        hidden = self._hidden(response, [instance_id])
        if hidden is not None:
            return hidden
        backend = as_ec2(response).ec2_backend
        before = set(backend.amis)
        answer = original()
        for image_id in set(backend.amis) - before:
            self.world.visibility.created_image(image_id, self.world.config.consistency)
        machine = self.world.fleet.machines.get(instance_id)
        no_reboot = str(response._get_param("NoReboot")).lower() == "true"
        if answer[0] == 200 and machine is not None and machine.state not in GONE and not no_reboot:
            self.world.fleet.reboot(machine, time.monotonic())
        return answer


def _market(response: BaseResponse) -> str:
    market = response._get_param("InstanceMarketOptions.MarketType")
    return "spot" if market == "spot" else "on-demand"


def _zone(response: BaseResponse) -> str:
    zone = response._get_param("Placement.AvailabilityZone")
    subnet_id = response._get_param("SubnetId")
    if not zone and subnet_id:
        try:
            zone = as_ec2(response).ec2_backend.get_subnet(subnet_id).availability_zone
        except Exception:  # an unknown subnet: moto's own call will answer for it
            zone = ""
    return str(zone or "")


def mismatch_answer(response: BaseResponse) -> Answer:
    """AWS's answer to a known ClientToken sent with other parameters."""
    return error_answer(
        response,
        "IdempotentParameterMismatch",
        "The client token you have provided is associated with a request that has different "
        "parameters.",
    )


def fingerprint_of(response: BaseResponse) -> str:
    """The request without its ClientToken, to tell a retry from a different request."""
    ignored = {"ClientToken", "Action", "Version"}
    items = sorted((k, v) for k, v in response.querystring.items() if k not in ignored)
    return json.dumps(items, default=str)
