"""What an error from Triton means for the record being scored.

Triton answers over gRPC, so every failure arrives as a
``tritonclient.utils.InferenceServerException`` carrying a gRPC status code.
Each code is placed in exactly one of two groups (a unit test fails when a
gRPC release adds a code that is in neither):

* **retry** → :class:`DependencyUnavailable`: the server, the network or the
  model is away, busy or being reloaded, or the scorer is not allowed in.
  Nothing is dead-lettered; the stream runtime pauses, readiness goes false,
  and the batch is tried again with capped back-off.
* **refused** → :class:`InvalidInput`: the server looked at this request and
  said no (a shape, a dtype, the model's own error). The scorer isolates the
  request that caused it and dead-letters only that one.

A few messages override their code: Triton reports a crashed Python-backend
stub, or a model that is loading, with codes that would otherwise refuse.
An error without a code, or with one not listed, is refused: the request is
dead-lettered with the status in its message rather than stalling the stream
on a failure no retry is known to fix.
"""

import logging

from tritonclient.utils import InferenceServerException

from cxrwatch.core.errors import CxrwatchError, DependencyUnavailable, InvalidInput

logger = logging.getLogger(__name__)

RETRY_CODES = frozenset(
    {
        "UNAVAILABLE",
        "DEADLINE_EXCEEDED",
        "RESOURCE_EXHAUSTED",
        "CANCELLED",
        "ABORTED",
        "UNKNOWN",
        "NOT_FOUND",
        "FAILED_PRECONDITION",
        "UNAUTHENTICATED",
        "PERMISSION_DENIED",
    }
)
REFUSED_CODES = frozenset(
    {
        "OK",
        "INVALID_ARGUMENT",
        "OUT_OF_RANGE",
        "INTERNAL",
        "UNIMPLEMENTED",
        "ALREADY_EXISTS",
        "DATA_LOSS",
    }
)

# Messages that mean "try again later" whatever the code says.
_TRANSIENT_MESSAGES = (
    "failed to connect",
    "is not ready",
    "unknown model",
    "stub process",
    "socket closed",
)


def status_code(exc: InferenceServerException) -> str:
    """The bare gRPC code name of ``exc`` (``"UNAVAILABLE"``), or ``""``."""
    status = str(exc.status() or "")
    return status.removeprefix("StatusCode.")


def translate(exc: InferenceServerException, url: str, model: str) -> CxrwatchError:
    """The project's exception for a Triton error; chain it with ``from exc``."""
    code = status_code(exc)
    message = exc.message() or str(exc)
    lowered = message.lower()
    where = f"Triton at {url}, model {model}"
    if code in RETRY_CODES or any(m in lowered for m in _TRANSIENT_MESSAGES):
        return DependencyUnavailable(f"{where}: {code or 'no status'}: {message}")
    if code not in REFUSED_CODES:
        logger.warning(
            "unmapped Triton status %r from %s; treating it as a refusal",
            code,
            where,
        )
    return InvalidInput(
        f"{where} refused the request ({code or 'no status'}): {message}"
    )
