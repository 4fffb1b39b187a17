"""Domain errors. The handlers map each to one HTTP status, once, in one place
(400/403/404/409/502/503)."""

from __future__ import annotations


class AWSJobsError(Exception):
    """Base of every error this package raises on purpose. `status` is the HTTP status and
    `reason` a stable machine-readable word, both sent in the error body."""

    status = 500
    reason = "error"


class InvalidRequest(AWSJobsError, ValueError):
    status = 400
    reason = "invalid_request"


class NotFound(AWSJobsError):
    """No such resource under the API (an unknown path, a malformed job id)."""

    status = 404
    reason = "not_found"


class JobNotFound(NotFound):
    pass


class Conflict(AWSJobsError):
    status = 409
    reason = "conflict"


class OverBudget(Conflict):
    """A launch that would pass c.AWSJobs.max_active_instances or max_hourly_spend; the
    message says the cap, the figure now and what the job would add."""

    reason = "budget"


class Forbidden(AWSJobsError):
    status = 403
    reason = "forbidden"


class BackendError(AWSJobsError):
    """AWS or the OS failed or refused."""

    status = 502
    reason = "backend_error"


class BackendNotConfigured(AWSJobsError):
    """The backend cannot be used until it is configured (says which setting to set)."""

    status = 400
    reason = "not_configured"


class StoreUnavailable(AWSJobsError):
    """The job store cannot be opened or written (corrupt, read-only, disk full). The message
    names the file and what to do; the request may succeed once that is fixed."""

    status = 503
    reason = "unavailable"
