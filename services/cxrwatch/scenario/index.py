"""The index a scenario is replayed from (``scenario.json``): its steps, in order."""

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, ValidationError

from cxrwatch.core.errors import InvalidInput
from cxrwatch.core.events import first_problem


class ReplayStep(BaseModel):
    """One file to publish: its format, where it lies under the index's folder,
    its key."""

    kind: Literal["dicom", "fhir", "hl7"]
    path: str = Field(min_length=1)
    key: str = Field(min_length=1)


class _Index(BaseModel):
    steps: list[ReplayStep]


def read_steps(index: Path) -> list[ReplayStep]:
    """The steps of ``index``; other fields of the file are left to their writers.

    Raises
    ------
    InvalidInput
        When the file is not JSON, a step lacks a kind, path or key, or a path
        leads out of the index's folder, naming the first place.
    OSError
        When the file cannot be read.
    """
    try:
        steps = _Index.model_validate_json(index.read_bytes()).steps
    except ValidationError as exc:
        raise InvalidInput(
            f"{index} is not a scenario index: {first_problem(exc)}"
        ) from exc
    folder = index.parent.resolve()
    for number, step in enumerate(steps):
        if not (folder / step.path).resolve().is_relative_to(folder):
            raise InvalidInput(
                f"{index} is not a scenario index: steps.{number}.path "
                f"{step.path!r} leads out of the index's folder"
            )
    return steps
