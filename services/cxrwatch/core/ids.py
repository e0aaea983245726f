"""Deterministic identifiers and log-safe patient references."""

import hashlib
import uuid

from cxrwatch.core.errors import MissingPatient

MAX_PATIENT_KEY = 128

_NAMESPACE = uuid.UUID("6f1c9a52-1d2b-5b8e-9c47-3e0f1a7d2c10")


def deterministic_id(kind: str, *parts: str) -> str:
    """Return a UUID that depends only on ``kind`` and ``parts``.

    A redelivered input yields the same output id, which is what makes
    at-least-once processing safe downstream.
    """
    return str(uuid.uuid5(_NAMESPACE, "\x1f".join((kind, *parts))))


def patient_ref(patient_key: str) -> str:
    """Return a short, one-way reference to a patient, safe to write in logs."""
    digest = hashlib.sha256(("cxrwatch-log\x1f" + patient_key).encode()).hexdigest()
    return "pt-" + digest[:12]


def checked_patient_key(key: str, where: str) -> str:
    """Return ``key`` if it can identify a patient, else raise :class:`MissingPatient`.

    Blank keys, keys with control characters and keys longer than
    ``MAX_PATIENT_KEY`` are refused: such a key would join unrelated records
    or none. The message names ``where`` the key came from, never the key.
    """
    if not key.strip():
        raise MissingPatient(f"{where}: the patient identifier is blank")
    if len(key) > MAX_PATIENT_KEY:
        raise MissingPatient(
            f"{where}: the patient identifier has {len(key)} characters, "
            f"more than {MAX_PATIENT_KEY}"
        )
    if any(ord(c) < 32 or ord(c) == 127 for c in key):
        raise MissingPatient(
            f"{where}: the patient identifier holds control characters"
        )
    return key
