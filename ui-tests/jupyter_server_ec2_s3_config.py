"""JupyterLab server configuration for `tests/s3mode.spec.ts`: the EC2 backend on the simulated
AWS with no EFS, its jobs' files through an S3 bucket (`c.EC2Backend.storage = "s3"`).

As `jupyter_server_ec2_config.py` (owner `galata`, the simulator's subnets and instance
profile), on the port AWSJOBS_UI_EC2_PORT the test gives, with the test's root folder
(JUPYTERLAB_GALATA_ROOT_DIR) and job database (AWSJOBS_UI_DATA_PATH). The bucket is made in the
simulator's S3 at start. Only the simulator on 127.0.0.1 is called, with dummy credentials.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
from awssim_site import prepare_bucket

c = get_config()  # type: ignore[name-defined] # noqa: F821
load_subconfig(os.path.join(os.path.dirname(__file__), "jupyter_server_ec2_config.py"))  # type: ignore[name-defined] # noqa: F821

c.AWSJobs.data_path = os.environ["AWSJOBS_UI_DATA_PATH"]
c.EC2Backend.efs_file_system_id = ""
c.EC2Backend.storage = "s3"
c.EC2Backend.s3_bucket = prepare_bucket(
    os.environ.get("AWSJOBS_SIM_URL", "http://127.0.0.1:8897"), "awsjobs-galata"
)
# The log followed every second (the worker sends its part every 3 s); the exit code is
# fetched by that follower, so the end is given longer than the EFS server's 1 s to show it.
c.EC2Backend.s3_log_interval_seconds = 1.0
c.EC2Backend.exit_code_grace_seconds = 15.0
# The simulator's worker runs the notebook with this environment's papermill and kernel.
c.EC2Backend.worker_python = sys.executable
