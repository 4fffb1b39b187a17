"""`AWSClients`: each client created once, its data files parsed off the event loop, and what
it leaves behind frozen out of the garbage collector's way (`gc_tuning.freeze_long_lived`)."""

from __future__ import annotations

import threading

import botocore
import pytest
from aiobotocore.session import get_session

from awsjobs_lab.aws import clients as clients_module
from awsjobs_lab.aws.clients import SERVICE_DATA_FILES, AWSClients


async def test_a_client_is_made_once_its_data_parsed_in_a_worker_thread_then_frozen(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    session = get_session()  # its own: the shared one may have parsed EC2's files already
    loader = session.get_component("data_loader")
    parsed_in: list[tuple[str, str]] = []
    original_load = loader.load_service_model

    def load(service: str, kind: str, api_version: str | None = None) -> object:
        parsed_in.append((f"{service}/{kind}", threading.current_thread().name))
        return original_load(service, kind, api_version)

    monkeypatch.setattr(loader, "load_service_model", load)
    clients = AWSClients(region="us-east-1", endpoint_url="http://127.0.0.1:9", session=session)
    frozen: list[list[str]] = []  # the clients that existed at each freeze
    monkeypatch.setattr(
        clients_module, "freeze_long_lived", lambda: frozen.append(sorted(clients.created()))
    )
    try:
        ec2 = await clients.ec2()
        assert await clients.ec2() is ec2  # once
        # Parsed before the client was made, and not on the loop's thread.
        first = parsed_in[: len(SERVICE_DATA_FILES)]
        assert [what for what, _ in first] == [f"ec2/{kind}" for kind in SERVICE_DATA_FILES]
        loop_thread = threading.current_thread().name
        assert all(thread != loop_thread for _, thread in first)
        assert frozen == [["ec2"]]  # after the client was made, once
        await clients.ssm()
        assert frozen == [["ec2"], ["ec2", "ssm"]]
    finally:
        await clients.close()


def test_a_service_without_data_files_is_left_to_create_client() -> None:
    clients_module.load_client_data(get_session(), "no-such-service")  # no error here


def test_the_methods_are_named_with_the_data_files() -> None:
    """Making a client names a method for every operation, through botocore's cache of those
    names: `load_client_data` (in a worker thread) fills it, so the loop's share is lookups."""
    session = get_session()
    operations = session.get_component("data_loader").load_service_model("ssm", "service-2")
    cache = botocore._xform_cache  # (name, separator) -> method name
    for operation in operations["operations"]:
        cache.pop((operation, "_"), None)
    clients_module.load_client_data(session, "ssm")
    assert cache[("SendCommand", "_")] == "send_command"
    assert all((operation, "_") in cache for operation in operations["operations"])
