"""Deterministic identifiers and log-safe patient references."""

import hashlib
import uuid

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
