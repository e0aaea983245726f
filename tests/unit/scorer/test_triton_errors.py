"""Every gRPC status Triton can answer maps to retry or refusal, by intent."""

import grpc
import pytest
from cxrwatch.core.errors import DependencyUnavailable, InvalidInput
from cxrwatch.scorer.triton_errors import REFUSED_CODES, RETRY_CODES, translate
from tritonclient.utils import InferenceServerException

# Worked out from what each code means, not read back from the module.
EXPECTED = {
    "OK": InvalidInput,
    "CANCELLED": DependencyUnavailable,
    "UNKNOWN": DependencyUnavailable,
    "INVALID_ARGUMENT": InvalidInput,
    "DEADLINE_EXCEEDED": DependencyUnavailable,
    "NOT_FOUND": DependencyUnavailable,
    "ALREADY_EXISTS": InvalidInput,
    "PERMISSION_DENIED": DependencyUnavailable,
    "RESOURCE_EXHAUSTED": DependencyUnavailable,
    "FAILED_PRECONDITION": DependencyUnavailable,
    "ABORTED": DependencyUnavailable,
    "OUT_OF_RANGE": InvalidInput,
    "UNIMPLEMENTED": InvalidInput,
    "INTERNAL": InvalidInput,
    "UNAVAILABLE": DependencyUnavailable,
    "DATA_LOSS": InvalidInput,
    "UNAUTHENTICATED": DependencyUnavailable,
}


def error(status: str | None, message: str = "it failed") -> InferenceServerException:
    return InferenceServerException(message, status=status)


def test_every_grpc_status_is_placed_in_exactly_one_group() -> None:
    codes = {code.name for code in grpc.StatusCode}
    assert not RETRY_CODES & REFUSED_CODES
    unmapped = codes - RETRY_CODES - REFUSED_CODES
    assert not unmapped, f"decide retry or refusal for the new codes {unmapped}"


@pytest.mark.parametrize("code", sorted(EXPECTED))
def test_each_status_maps_to_its_project_error(code: str) -> None:
    translated = translate(error(f"StatusCode.{code}"), "127.0.0.1:8001", "cxr_fusion")
    assert type(translated) is EXPECTED[code]
    assert code in str(translated)
    assert "cxr_fusion" in str(translated)


def test_an_unknown_status_is_a_refusal_that_names_it() -> None:
    translated = translate(
        error("StatusCode.SOMETHING_NEW", "odd"), "127.0.0.1:8001", "cxr_fusion"
    )
    assert type(translated) is InvalidInput
    assert "SOMETHING_NEW" in str(translated)
    assert "odd" in str(translated)


def test_an_error_without_status_is_a_refusal() -> None:
    translated = translate(error(None, "bad datatype"), "h:1", "m")
    assert type(translated) is InvalidInput
    assert "no status" in str(translated)


@pytest.mark.parametrize(
    "message",
    [
        "Failed to process the request(s) for model instance 'cxr_fusion_0', "
        "message: Stub process 'cxr_fusion_0' is not healthy.",
        "Request for unknown model: 'cxr_fusion' is not found",
        "Request for unknown model: 'cxr_fusion' version 2 is not ready",
        "Socket closed",
    ],
)
def test_a_transient_message_retries_whatever_its_status(message: str) -> None:
    translated = translate(error("StatusCode.INTERNAL", message), "h:1", "m")
    assert type(translated) is DependencyUnavailable


def test_a_refused_shape_is_invalid_input() -> None:
    message = (
        "unexpected shape for input 'clinical' for model 'cxr_fusion'. "
        "Expected [-1,12], got [8,11]."
    )
    translated = translate(error("StatusCode.INVALID_ARGUMENT", message), "h:1", "m")
    assert type(translated) is InvalidInput
    assert "[8,11]" in str(translated)
