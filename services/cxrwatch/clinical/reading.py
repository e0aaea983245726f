"""What one EHR message says, per patient, once read and normalised.

Both readers (FHIR R4 and HL7 v2) produce a :class:`Reading`. They read every
observation before any is stored, collecting each refusal with the observation
it concerns, so that a message is either usable as a whole or refused as a
whole with every reason listed (see ``docs/clinical.md``, partial messages).
"""

from collections import Counter
from dataclasses import dataclass, field
from datetime import date
from typing import Literal

from cxrwatch.core.errors import InvalidInput, MissingPatient
from cxrwatch.core.ids import checked_patient_key
from cxrwatch.core.observations import Sex, StoredObservation

SourceFormat = Literal["fhir-r4", "hl7v2"]

# Status ranks fold into an observation's version, so that of two deliveries with
# the same explicit version the later status (amended after final) wins.
STATUS_RANKS = {
    "preliminary": 1,
    "final": 2,
    "amended": 3,
    "corrected": 3,
    "entered-in-error": 4,
}
_MAX_REFUSALS_SHOWN = 5


def version(explicit: int, status: str) -> int:
    """Combine a source's explicit version (a FHIR versionId, a message time in
    milliseconds) with the status rank into one number, larger wins."""
    return explicit * 10 + STATUS_RANKS[status]


@dataclass
class PatientReading:
    """What a message says about one patient."""

    patient_key: str
    observations: list[StoredObservation] = field(default_factory=list)
    birth_date: date | None = None
    sex: Sex | None = None

    @property
    def has_demographics(self) -> bool:
        """True when the message gave a birth date or a sex."""
        return self.birth_date is not None or self.sex is not None


@dataclass
class Reading:
    """One message, read: per patient, the values to store; what was left aside."""

    source_format: SourceFormat
    message_id: str
    patients: dict[str, PatientReading] = field(default_factory=dict)
    ignored: Counter[str] = field(default_factory=Counter)
    refusals: list[InvalidInput] = field(default_factory=list)

    def patient(self, patient_key: str) -> PatientReading:
        """The reading of one patient, created on first use.

        Raises
        ------
        MissingPatient
            If the key is blank, too long or holds control characters.
        """
        if patient_key not in self.patients:
            checked_patient_key(patient_key, "the message")
            self.patients[patient_key] = PatientReading(patient_key)
        return self.patients[patient_key]

    @property
    def observation_count(self) -> int:
        """Observations read across patients."""
        return sum(len(p.observations) for p in self.patients.values())

    @property
    def usable(self) -> bool:
        """True when there is something to store."""
        return any(p.observations or p.has_demographics for p in self.patients.values())

    def raise_refusals(self) -> None:
        """Refuse the whole message if any part of it was refused.

        Raises
        ------
        MissingPatient
            If every refusal is a missing patient.
        InvalidInput
            Otherwise, naming each refused observation (the first five).
        """
        if not self.refusals:
            return
        shown = "; ".join(str(r) for r in self.refusals[:_MAX_REFUSALS_SHOWN])
        more = len(self.refusals) - _MAX_REFUSALS_SHOWN
        if more > 0:
            shown += f"; and {more} more"
        count = len(self.refusals)
        problems = "problem" if count == 1 else "problems"
        message = f"message refused, nothing stored; {count} {problems}: {shown}"
        if all(isinstance(r, MissingPatient) for r in self.refusals):
            raise MissingPatient(message)
        raise InvalidInput(message)
