"""Domain errors. The handlers map each to one HTTP status, once, in one place."""

from __future__ import annotations


class AWSJobsError(Exception):
    """Base of every error this package raises on purpose. `status` is the HTTP status."""

    status = 500


class InvalidRequest(AWSJobsError, ValueError):
    status = 400


class JobNotFound(AWSJobsError):
    status = 404


class Conflict(AWSJobsError):
    status = 409


class Forbidden(AWSJobsError):
    status = 403


class BackendError(AWSJobsError):
    """AWS or the OS failed or refused."""

    status = 502


class BackendNotConfigured(AWSJobsError):
    """The backend cannot be used until it is configured (says which setting to set)."""

    status = 400
