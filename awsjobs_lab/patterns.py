"""Every id and name pattern the extension checks, defined once.

Requests, backends, the AWS layer and the routes all match against these, so a value accepted
in one place is accepted everywhere. Patterns are anchored at the end (`\\Z`): use `.match`.
"""

from __future__ import annotations

import re

# A job id as `models.new_job_id` makes it: 16 lowercase hex digits.
JOB_ID_TEXT = r"[0-9a-f]{16}"
JOB_ID = re.compile(JOB_ID_TEXT + r"\Z")
# The same as a glob (gitignore syntax): file names that carry a job id.
JOB_ID_GLOB = "[0-9a-f]" * 16

# An environment variable name, portable across shells (POSIX).
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")

# A notebook parameter: papermill writes `name = value` lines, so names must be identifiers.
PARAMETER_NAME = ENV_NAME
# A report's parameter (an R name, `-P name:value` for Quarto): no `:` or `=` in it.
REPORT_PARAMETER_NAME = re.compile(r"[A-Za-z_.][A-Za-z0-9_.]*\Z")

# An EC2 instance type as AWS spells it ("m7i.xlarge", "u-6tb1.metal").
INSTANCE_TYPE = re.compile(r"[a-z0-9-]+\.[a-z0-9-]+\Z")
GPU_MODEL = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]{0,39}\Z")  # GpuInfo's names: T4, A10G, L40S

# A schedule's name (unique per owner): also part of AWS names and tags, hence the short set.
SCHEDULE_NAME_TEXT = r"[A-Za-z0-9_-]{1,64}"
SCHEDULE_NAME = re.compile(SCHEDULE_NAME_TEXT + r"\Z")

# An EC2 instance id, old (8 hex digits) or new (17).
INSTANCE_ID = re.compile(r"i-[0-9a-f]{8,17}\Z")
