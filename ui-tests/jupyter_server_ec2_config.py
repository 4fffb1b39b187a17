"""JupyterLab server configuration for the EC2 Galata tests (the Instances view, recovery): as
`jupyter_server_test_config.py` (no token, fresh root and job database), on its own port
(AWSJOBS_UI_EC2_PORT, 8899), with the EC2 backend enabled against the simulated AWS that
playwright.config.js starts (`python -m tests.awssim`, AWSJOBS_SIM_URL) and dummy credentials:
nothing here can reach real AWS.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
from awssim_site import prepare

c = get_config()  # type: ignore[name-defined] # noqa: F821
os.environ["AWSJOBS_UI_PORT"] = os.environ.get("AWSJOBS_UI_EC2_PORT", "8899")
load_subconfig(os.path.join(os.path.dirname(__file__), "jupyter_server_test_config.py"))  # type: ignore[name-defined] # noqa: F821

SIM_URL = os.environ.get("AWSJOBS_SIM_URL", "http://127.0.0.1:8897")
os.environ.update(
    {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": SIM_URL,
    }
)
for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN"):
    os.environ.pop(name, None)

c.AWSJobs.backends = ["local", "ec2"]
c.EC2Backend.region = "us-east-1"
c.EC2Backend.endpoint_url = SIM_URL
c.EC2Backend.pricing_endpoint_url = "http://127.0.0.1:9"  # nothing listens: no price lookups
c.EC2Backend.warm_prices_on_start = False
c.EC2Backend.owner = "galata"
c.EC2Backend.image_id = "ami-12345678"
# Jobs launch on the simulator (recovery.spec.ts): its profile and default subnets.
c.EC2Backend.instance_profile_name = "awsjobs-worker"
c.EC2Backend.subnet_ids = prepare(SIM_URL, c.EC2Backend.instance_profile_name)
# An interruption or an end seen within seconds: the "EFS" is this machine's own folder.
c.EC2Backend.monitor_interval_seconds = 1.0
c.EC2Backend.exit_code_grace_seconds = 1.0
c.AWSJobs.max_active_instances = 1  # the spending cap recovery.spec.ts runs into
c.EC2Backend.efs_file_system_id = "fs-12345678"
c.EC2Backend.efs_mount_path = c.ServerApp.root_dir
