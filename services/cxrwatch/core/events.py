"""Messages on the topics between services, one model per topic.

Every model here has a committed JSON Schema under ``schemas/`` and a test
that keeps the two equal. Timestamps are timezone-aware and serialised in UTC.
"""

import base64
from datetime import datetime
from typing import Annotated, Literal, TypeVar

import numpy as np
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

from cxrwatch.core import topics
from cxrwatch.core.errors import InvalidInput


def _aware(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise ValueError("timestamp must carry a UTC offset")
    return value


AwareDatetime = Annotated[datetime, AfterValidator(_aware)]


class _Event(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Tensor(_Event):
    """A dense array, little-endian, row-major, base64 in JSON."""

    dtype: Literal["float32", "float16"]
    shape: list[int] = Field(min_length=1)
    data: str = Field(description="base64 of the raw little-endian bytes")

    @classmethod
    def from_array(cls, array: np.ndarray) -> "Tensor":
        """Wrap a float32 or float16 array."""
        contiguous = np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<"))
        return cls(
            dtype=str(contiguous.dtype.name),
            shape=list(contiguous.shape),
            data=base64.b64encode(contiguous.tobytes()).decode("ascii"),
        )

    def to_array(self) -> np.ndarray:
        """Decode to an array, checking that the byte count matches the shape."""
        raw = base64.b64decode(self.data, validate=True)
        dtype = np.dtype(self.dtype).newbyteorder("<")
        expected = int(np.prod(self.shape)) * dtype.itemsize
        if len(raw) != expected:
            raise InvalidInput(
                f"tensor holds {len(raw)} bytes but shape {self.shape} "
                f"of {self.dtype} needs {expected}"
            )
        return np.frombuffer(raw, dtype=dtype).reshape(self.shape)


class Radiograph(_Event):
    """A chest radiograph, decoded to the model's input (imaging.radiographs.v1)."""

    radiograph_id: str
    patient_key: str = Field(min_length=1)
    study_instance_uid: str
    series_instance_uid: str
    sop_instance_uid: str
    acquired_at: AwareDatetime
    modality: Literal["CR", "DX"]
    view_position: str | None = None
    body_part: str | None = None
    patient_sex: Literal["M", "F", "O"] | None = None
    patient_birth_date: str | None = Field(None, pattern=r"^\d{4}-\d{2}-\d{2}$")
    pixel_spacing_mm: tuple[float, float] | None = None
    transfer_syntax_uid: str
    photometric_interpretation: str
    image: Tensor


class ObservationValue(_Event):
    """One normalised clinical value in its feature's canonical unit."""

    feature: str
    value: float
    unit: str
    effective_at: AwareDatetime
    source_id: str
    status: Literal["preliminary", "final", "amended", "corrected", "entered-in-error"]


class ClinicalUpdate(_Event):
    """Values the clinical service stored for one patient (clinical.updates.v1)."""

    update_id: str
    patient_key: str = Field(min_length=1)
    source_format: Literal["fhir-r4", "hl7v2"]
    observations: list[ObservationValue] = Field(min_length=1)
    earliest_effective_at: AwareDatetime
    latest_effective_at: AwareDatetime


class News2(_Event):
    """NEWS2 (RCP 2017) from the vitals known at the scoring time."""

    score: int | None = Field(None, ge=0, le=20)
    clinical_risk: Literal["low", "low-medium", "medium", "high"] | None = None
    components: dict[str, int] = Field(default_factory=dict)
    missing: list[str] = Field(default_factory=list)


class InferenceRequest(_Event):
    """A radiograph joined with clinical data as of one time (inference.requests.v1)."""

    request_id: str
    radiograph_id: str
    patient_key: str = Field(min_length=1)
    acquired_at: AwareDatetime
    as_of: AwareDatetime
    trigger: Literal["radiograph", "clinical-update"]
    image: Tensor
    features: list[str]
    clinical: list[float]
    clinical_mask: list[float]
    clinical_values: dict[str, float | None]
    news2: News2


class RiskScore(_Event):
    """The model's output for one inference request (risk.scores.v1)."""

    score_id: str
    request_id: str
    radiograph_id: str
    patient_key: str = Field(min_length=1)
    acquired_at: AwareDatetime
    as_of: AwareDatetime
    p_critical: float = Field(ge=0.0, le=1.0)
    progression_risk: float
    model_name: str
    model_version: str
    shadow: bool = False
    clinical_values: dict[str, float | None]
    news2: News2
    scored_at: AwareDatetime


class FeatureChange(_Event):
    """How one clinical input moved between two scores."""

    feature: str
    previous: float | None
    current: float | None
    unit: str


class Alert(_Event):
    """A rise in a patient's risk (alerts.deterioration.v1)."""

    alert_id: str
    patient_key: str = Field(min_length=1)
    score_id: str
    radiograph_id: str
    raised_at: AwareDatetime
    reason: Literal["band-increase", "rapid-rise"]
    band: Literal["low", "moderate", "high", "critical"]
    previous_band: Literal["low", "moderate", "high", "critical"] | None
    p_critical: float
    previous_p_critical: float | None
    progression_risk: float
    changes: list[FeatureChange]
    news2: News2
    model_name: str
    model_version: str


class DeadLetter(_Event):
    """A record that could not be processed, with where it came from (deadletter.v1)."""

    dead_letter_id: str
    service: str
    error_class: str
    error_message: str
    source_topic: str
    source_partition: int
    source_offset: int
    source_key: str | None = Field(None, description="base64 of the record key")
    source_headers: dict[str, str]
    source_value: str = Field(
        description="base64 of the record value, cut short when it was too large"
    )
    source_value_bytes: int = Field(0, ge=0, description="size of the whole value")
    source_value_truncated: bool = Field(
        False, description="true when source_value holds only the value's start"
    )
    failed_at: AwareDatetime


EVENT_MODELS: dict[str, type[BaseModel]] = {
    topics.IMAGING_RADIOGRAPHS: Radiograph,
    topics.CLINICAL_UPDATES: ClinicalUpdate,
    topics.INFERENCE_REQUESTS: InferenceRequest,
    topics.RISK_SCORES: RiskScore,
    topics.ALERTS: Alert,
    topics.DEADLETTER: DeadLetter,
}

EventT = TypeVar("EventT", bound=BaseModel)


def first_problem(exc: ValidationError, whole: str = "") -> str:
    """The first problem of ``exc`` on one line, ``place: message``; a problem
    with the whole value is placed at ``whole``, or not at all."""
    first = exc.errors()[0]
    where = ".".join(map(str, first["loc"])) or whole
    return f"{where}: {first['msg']}" if where else str(first["msg"])


def decode_event(model: type[EventT], raw: bytes | str) -> EventT:
    """Parse a record value into ``model``, as :class:`InvalidInput` when it fails."""
    try:
        return model.model_validate_json(raw)
    except ValueError as exc:
        raise InvalidInput(f"not a valid {model.__name__}: {exc}") from exc
