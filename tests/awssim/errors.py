"""AWS error answers, serialised by moto in each service's own protocol (EC2 XML, SSM JSON).

The exception classes are made here, outside the moto package, on purpose: moto looks the error
model up by the exception's module, and a class inside moto's `core` gives "Unknown service".
"""

from __future__ import annotations

from moto.core.exceptions import ServiceException
from moto.core.responses import ActionResult, BaseResponse

# HTTP statuses AWS answers with; every other code is a 400.
DEFAULT_STATUS: dict[str, int] = {
    "RequestLimitExceeded": 503,  # EC2 throttling
    "InternalError": 500,  # EC2
    "InternalServerError": 500,  # SSM
    "ServiceUnavailable": 503,
    "Unavailable": 503,
    "InsufficientInstanceCapacity": 500,  # a server error on EC2: SDKs retry it
    "InsufficientCapacity": 500,
}

MESSAGES: dict[str, str] = {
    "RequestLimitExceeded": "Request limit exceeded.",
    "ThrottlingException": "Rate exceeded",
    "InternalError": "An internal error has occurred",
    "InternalServerError": "An internal error has occurred",
    "ServiceUnavailable": "The service is unavailable. Please try again shortly.",
    "Unavailable": "The server is overloaded and can't handle the request.",
    "InsufficientInstanceCapacity": (
        "We currently do not have sufficient capacity in the Availability Zone you requested."
    ),
    "SpotMaxPriceTooLow": "Your Spot request price is lower than the minimum required price.",
    "MaxSpotInstanceCountExceeded": "Max spot instance count exceeded",
    "VcpuLimitExceeded": (
        "You have requested more vCPU capacity than your current vCPU limit allows for the "
        "instance bucket that the specified instance type belongs to."
    ),
    "Unsupported": "The requested configuration is currently not supported.",
}

_CLASSES: dict[str, type[ServiceException]] = {}


def error_class(code: str) -> type[ServiceException]:
    """One ServiceException subclass per AWS error code, made once."""
    if code not in _CLASSES:
        _CLASSES[code] = type(
            "AwsSim_" + code.replace(".", "_"),
            (ServiceException,),
            {"code": code, "message": MESSAGES.get(code, code), "__module__": __name__},
        )
    return _CLASSES[code]


Answer = tuple[int, dict[str, str], str | bytes]


def error_answer(
    response: BaseResponse, code: str, message: str | None = None, status: int | None = None
) -> Answer:
    """The answer of `response`'s call failing with `code`, in its service's protocol."""
    exception = error_class(code)(message) if message else error_class(code)()
    _, headers, body = response.serialized(ActionResult(exception))
    headers, body = response._enrich_response(headers, body)
    return status or DEFAULT_STATUS.get(code, 400), headers, body


def result_answer(response: BaseResponse, result: object) -> Answer:
    """A successful answer built from model objects or dicts, as moto's own methods do."""
    status, headers, body = response.serialized(ActionResult(result))
    headers, body = response._enrich_response(headers, body)
    return status, headers, body
