"""The run's clock: AWS's delays and the app's timings, scaled down by the same idea.

One "minute" of a job's max lifetime lasts `MINUTE` seconds, both in the app
(`c.AWSJobs.lifetime_unit_seconds`) and on the simulated worker (`shutdown -h +N`), so the
instance's own deadline and the server's agree. AWS's own delays (boot, agent registration,
consistency windows, the spot notice) keep their order of magnitude relative to each other:
tens of seconds on AWS become about a second here.
"""

from __future__ import annotations

from typing import Any

MINUTE = 1.0  # seconds in one minute of max_lifetime_minutes
CLOSED_PORT_URL = "http://127.0.0.1:9"  # moto has no Pricing API: every price call fails at once
REGION = "us-east-1"
IMAGE_ID = "ami-12c6146b"  # the simulator does not validate image ids
INSTANCE_PROFILE = "awsjobs-chaos-worker"
OWNER = "chaos"
FAMILIES = ["m7i", "c7i"]  # small catalogue: moto serialises each instance type
BUCKET = "awsjobs-chaos"  # the S3 mode's bucket (on the simulator's S3)
# The server's storage, by how often it has started: S3 first, then EFS, S3, ... Each job keeps
# the storage it was accepted with, so jobs of both kinds live through every kill.
STORAGES = ("s3", "efs")


def simulator_config(seed: int, sandbox_dir: str, efs_root: str) -> dict[str, Any]:
    """The simulator's switches, faults aside (those come from the plan)."""
    return {
        "seed": seed,
        "clock": {
            "tick_seconds": 0.05,
            "boot_seconds": 0.8,  # AWS: ~30 s
            "agent_register_seconds": 0.8,  # AWS: ~10-60 s after boot
            "shutting_down_seconds": 0.4,
            "halt_delay_seconds": 0.1,
            "reboot_seconds": 0.6,
            "spot_notice_seconds": 1.0,  # AWS: 2 minutes
            "shutdown_minute_seconds": MINUTE,
            "ssm_timeout_scale": 0.1,  # a 600 s delivery timeout lasts 60 s
        },
        "consistency": {
            "instance_not_found_seconds": 1.5,
            "instance_unlisted_seconds": 3.0,
            "image_not_found_seconds": 1.0,
            "invocation_not_found_seconds": 0.5,
        },
        "worker": {"enabled": True, "efs_root": efs_root, "sandbox_dir": sandbox_dir},
    }


def app_config(endpoint_url: str, subnets: list[str], cache_dir: str) -> dict[str, Any]:
    """Our server's configuration: the EC2 backend on the simulator, timings scaled."""
    return {
        # Only what the run needs: a restart after a kill is then a few seconds.
        "ServerApp": {
            "jpserver_extensions": {
                "awsjobs_lab": True,
                "benchmarks.probe": False,
                "jupyterlab": False,
                "jupyter_lsp": False,
                "jupyter_server_terminals": False,
                "notebook_shim": False,
            }
        },
        "AWSJobs": {
            "backends": ["ec2"],
            "default_backend": "ec2",
            "lifetime_unit_seconds": MINUTE,
            "max_lifetime_minutes": 60,
            "stop_retry_seconds": 0.5,
        },
        "EC2Backend": {
            "endpoint_url": endpoint_url,
            "pricing_endpoint_url": CLOSED_PORT_URL,
            "region": REGION,
            "image_id": IMAGE_ID,
            "subnet_ids": subnets,
            "efs_file_system_id": "fs-0123456789abcdef0",
            "s3_bucket": BUCKET,
            "s3_log_interval_seconds": 0.5,
            "instance_profile_name": INSTANCE_PROFILE,
            "owner": OWNER,
            "allowed_families": FAMILIES,
            "cache_dir": cache_dir,
            "monitor_interval_seconds": 0.5,
            "monitor_max_backoff_seconds": 3.0,
            "command_check_interval_seconds": 2.0,
            "exit_code_grace_seconds": 2.0,
            "launch_timeout_seconds": 20.0,
            "ssm_retry_seconds": 0.2,
            "ssm_retry_max_seconds": 1.0,
            "reattach_grace_seconds": 8.0,
            # Over the simulator's NotFound/unlisted windows (1.5 s / 3 s), as 300 s is over
            # AWS's; a launch's cleanup and its retries scaled alike.
            "consistency_window_seconds": 10.0,
            "launch_cleanup_timeout_seconds": 30.0,
            "cleanup_retry_seconds": 0.3,
            "stop_confirm_attempts": 4,
            "stop_confirm_delay_seconds": 0.5,
        },
    }
