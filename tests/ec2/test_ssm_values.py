"""Issue 18: two places where real SSM differs from moto, on the simulated AWS.

1. SSM resolves `{{ssm:…}}` / `{{resolve:…}}` references in a command's parameters before the
   agent sees them: no value of the user's may reach SendCommand as it is. The parameters sent
   are read at the client (every one of them), then the simulator's worker really runs the
   command text and the job must see its values literally.
2. Under the tag-conditioned IAM policy, SendCommand to an instance whose agent has not
   registered yet may answer `AccessDeniedException`: retried for
   `ssm_access_denied_grace_seconds`, then the job fails naming the IAM statements to check,
   its instance terminated. The simulator does not model IAM: its fault rules answer the
   denial (tests/awssim/README.md, "faults").
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest
from ec2_helpers import Recorder, make_job

from awsjobs_lab.aws import command
from awsjobs_lab.backends.ec2 import EC2Backend
from awsjobs_lab.errors import BackendError
from awsjobs_lab.models import Job
from tests.awssim.server import SimulatedAWS
from tests.awssim.support import eventually

FOLDER = "{{ssm:folder}}"
SCRIPT = "{{ssm:x}}.py"
LOG = "work/{{ssm:folder}}/{{resolve:ssm:log}}.log"
ENV = {
    "SECRET": "{{resolve:y}}",
    "PARAM": "{{ssm:/a/b}} and {{ resolve:secretsmanager:s }}",
    "QUOTES": 'it\'s "$HOME" `id` $(id) \\n',
    "TRAILING": "two lines\n\n",
    "EMPTY": "",
}
# Writes what the job sees (its environment, its file and folder names) beside itself.
SEES = (
    "import json, os, pathlib\n"
    f"names = {sorted(ENV)!r}\n"
    "seen = {'env': {n: os.environ[n] for n in names},\n"
    "        'file': pathlib.Path(__file__).name, 'folder': pathlib.Path.cwd().name}\n"
    "pathlib.Path('seen.json').write_text(json.dumps(seen))\n"
    "print('ran', seen['env']['SECRET'])\n"
)
WORKER_CLOCK = {
    "boot_seconds": 0.1,
    "agent_register_seconds": 0.1,
    "halt_delay_seconds": 0.05,
    "shutting_down_seconds": 0.1,
}


@pytest.fixture
def worker(sim: SimulatedAWS, root: Path) -> SimulatedAWS:
    """The simulator's worker on: boot scripts and commands really run, `root` is the EFS."""
    sim.configure({"clock": WORKER_CLOCK, "worker": {"enabled": True, "efs_root": str(root)}})
    return sim


async def _sent_parameters(backend: EC2Backend) -> list[dict[str, Any]]:
    """Every SendCommand's parameters as the backend's own client sends them."""
    sent: list[dict[str, Any]] = []

    def capture(params: dict[str, Any], **_: Any) -> None:
        sent.append(json.loads(json.dumps(params)))

    client = await backend.clients.ssm()
    client.meta.events.register("provide-client-params.ssm.SendCommand", capture)
    return sent


def _job_in_braces(root: Path, name: str = SCRIPT, body: str = SEES, **fields: Any) -> Job:
    (root / "work" / FOLDER).mkdir(parents=True, exist_ok=True)
    return make_job(root, f"{FOLDER}/{name}", body=body, log_path=LOG, env=dict(ENV), **fields)


async def _exit_code(backend: EC2Backend, job: Job, timeout: float = 30.0) -> str:
    path = backend.exit_code_path(job)

    async def written() -> str | None:
        return path.read_text() if path.is_file() else None

    found: str = await eventually(written, timeout=timeout)
    return found


# -- 1. values SSM would rewrite ------------------------------------------------------------


def test_no_user_value_is_written_into_the_command_text_as_it_is():
    lines = command.build_commands(
        job_id="0123456789abcdef",
        argv=["python3", SCRIPT, "{{x}}"],
        cwd="/w/{{ssm:d}}",
        log_path="/w/{{a}}",
        exit_code_path="/w/{{resolve:e}}/exit_code",
        env={"A": "{{ssm:a}}"},
    )
    assert not any("{{" in line or "ssm:" in line or "resolve:" in line for line in lines)
    assert command.decode_line("awsjobs_arg_2", "{{x}}") in lines


async def test_send_command_carries_no_reference_from_the_user(make_backend, root):
    backend = make_backend()
    sent = await _sent_parameters(backend)
    job = _job_in_braces(root)
    await backend.launch(job, Recorder(job))

    (params,) = sent
    # Every parameter (the command text, the comment, the timeouts), not only `commands`.
    assert "{{" not in json.dumps(params)
    assert params["Comment"] == f"awsjobs {job.id} __ssm_x__.py"
    text = "\n".join(params["Parameters"]["commands"])
    for value in [*filter(None, ENV.values()), FOLDER, SCRIPT, LOG]:
        assert value not in text
    assert command.encode("{{resolve:y}}") in text


async def test_the_job_sees_its_values_literally(worker, make_backend, root):
    backend = make_backend(worker_python=sys.executable)
    job = _job_in_braces(root)
    await backend.launch(job, Recorder(job))

    assert await _exit_code(backend, job) == "0\n"
    seen = json.loads((root / "work" / FOLDER / "seen.json").read_text())
    assert seen == {"env": ENV, "file": SCRIPT, "folder": FOLDER}
    log = (root / LOG).read_text()  # the log at its literal path
    assert "ran {{resolve:y}}" in log


async def test_a_notebook_parameter_and_name_in_braces(worker, make_backend, root):
    nbformat = pytest.importorskip("nbformat")
    pytest.importorskip("papermill")
    kernel = {"name": "python3", "display_name": "Python 3", "language": "python"}
    cells = [
        nbformat.v4.new_code_cell("value = 'default'", metadata={"tags": ["parameters"]}),
        nbformat.v4.new_code_cell("import pathlib\npathlib.Path('nb-seen.txt').write_text(value)"),
    ]
    nb = nbformat.v4.new_notebook(cells=cells, metadata={"kernelspec": kernel})
    backend = make_backend(worker_python=sys.executable)
    job = _job_in_braces(
        root,
        "{{ssm:nb}}.ipynb",
        body=nbformat.writes(nb),
        parameters={"value": "{{resolve:ssm:p}}"},
    )
    await backend.launch(job, Recorder(job))

    code = await _exit_code(backend, job, timeout=120.0)  # a kernel starts
    assert code == "0\n", (root / LOG).read_text()
    assert (root / "work" / FOLDER / "nb-seen.txt").read_text() == "{{resolve:ssm:p}}"
    assert (root / "work" / FOLDER / f"{{{{ssm:nb}}}}.{job.id}.ipynb").is_file()


# -- 2. AccessDenied while the agent registers -----------------------------------------------


async def test_access_denied_while_the_agent_registers_is_waited_out(
    worker, make_backend, root, faults
):
    faults.add("ssm", "SendCommand", "AccessDeniedException", times=3)
    # A launch timeout four calls cannot outlast (the fixture's 5 s can on a loaded machine).
    backend = make_backend(worker_python=sys.executable, launch_timeout_seconds=600.0)
    job = _job_in_braces(root)
    await backend.launch(job, Recorder(job))

    assert job.handle["command_id"]
    assert faults.calls[("ssm", "SendCommand")] >= 4
    assert await _exit_code(backend, job) == "0\n"  # the job ran


@pytest.mark.parametrize("grace", [5.0, 0.0])
async def test_access_denied_past_the_window_fails_and_terminates(
    make_backend, root, sim, faults, aws, grace
):
    faults.always("ssm", "SendCommand", "AccessDeniedException")
    # A window longer than a first SendCommand takes on a loaded machine, so that a second
    # attempt is made within it; the launch timeout is longer still.
    backend = make_backend(
        ssm_access_denied_grace_seconds=grace, ssm_retry_seconds=0.25, launch_timeout_seconds=60.0
    )
    job = make_job(root)
    with pytest.raises(BackendError) as err:
        await backend.launch(job, Recorder(job))

    message = str(err.value)
    for statement in (
        "ssm:SendCommand",
        "arn:aws:ec2:us-east-1:ACCOUNT:instance/*",
        "ssm:resourceTag/awsjobs:managed",
        "document/AWS-RunShellScript",
        "ssm_access_denied_grace_seconds",
    ):
        assert statement in message
    iid = job.handle["instance_id"]
    assert f"instance {iid} was terminated" in message
    ec2 = await aws("ec2")
    resp = await ec2.describe_instances(InstanceIds=[iid])
    assert resp["Reservations"][0]["Instances"][0]["State"]["Name"] in (
        "shutting-down",
        "terminated",
    )
    attempts = faults.calls[("ssm", "SendCommand")]
    assert attempts == 1 if grace == 0 else attempts > 1
    assert "command_id" not in job.handle


async def test_access_denied_until_the_launch_timeout_names_the_policy(make_backend, root, faults):
    # The window longer than the launch timeout: the timeout ends the wait, still as a denial.
    faults.always("ssm", "SendCommand", "AccessDeniedException")
    backend = make_backend(launch_timeout_seconds=0.3, ssm_access_denied_grace_seconds=120)
    job = make_job(root)
    with pytest.raises(BackendError, match="ssm:resourceTag/awsjobs:managed"):
        await backend.launch(job, Recorder(job))
