"""Domain errors. The handlers map each to one HTTP status, once, in one place."""

from __future__ import annotations


class AWSJobsError(Exception):
    """Base of every error this package raises on purpose. `status` is the HTTP status and
    `reason` a stable machine-readable word, both sent in the error body."""

    status = 500
    reason = "error"


class InvalidRequest(AWSJobsError, ValueError):
    status = 400
    reason = "invalid_request"


class JobNotFound(AWSJobsError):
    status = 404
    reason = "not_found"


class Conflict(AWSJobsError):
    status = 409
    reason = "conflict"


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
