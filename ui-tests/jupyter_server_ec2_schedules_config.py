"""JupyterLab server configuration for the EC2 schedule of `tests/schedules.spec.ts`.

As `jupyter_server_ec2_config.py` (the EC2 backend on the simulated AWS, owner `galata`), on
the port AWSJOBS_UI_EC2_PORT the test gives, but the job database (AWSJOBS_UI_DATA_PATH) and
the root folder (JUPYTERLAB_GALATA_ROOT_DIR) are the test's, so they outlive the server: the
test stops it, fires the schedule on the simulator, and starts it again. EC2 schedules are
enabled with an execution role made in the simulator's IAM (the simulator fires a schedule only
when its role exists). Only the simulator on 127.0.0.1 is called, with dummy credentials.
"""

import json
import os

import botocore.session
from botocore.exceptions import ClientError

c = get_config()  # type: ignore[name-defined] # noqa: F821
load_subconfig(os.path.join(os.path.dirname(__file__), "jupyter_server_ec2_config.py"))  # type: ignore[name-defined] # noqa: F821

ROLE = "awsjobs-galata-scheduler"
TRUST = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Effect": "Allow",
            "Principal": {"Service": "scheduler.amazonaws.com"},
            "Action": "sts:AssumeRole",
        }
    ],
}


def scheduler_role(url: str) -> str:
    """The execution role's ARN, made on the simulator unless it exists."""
    if not url.startswith("http://127.0.0.1:"):
        raise SystemExit(f"refusing to call {url}: only the local simulator")
    iam = botocore.session.get_session().create_client(
        "iam",
        region_name="us-east-1",
        endpoint_url=url,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    try:
        made = iam.create_role(RoleName=ROLE, AssumeRolePolicyDocument=json.dumps(TRUST))
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") != "EntityAlreadyExists":
            raise
        made = iam.get_role(RoleName=ROLE)
    return str(made["Role"]["Arn"])


c.AWSJobs.data_path = os.environ["AWSJOBS_UI_DATA_PATH"]
c.EC2Backend.scheduler_role_arn = scheduler_role(
    os.environ.get("AWSJOBS_SIM_URL", "http://127.0.0.1:8897")
)
