"""Put DICOM, FHIR and HL7 v2 files on the input topics.

Each record gets the CloudEvents headers and a content type, and is keyed by
the patient when the file says who it is, so one patient's messages stay in
order on one partition. The file is sent as it is: deciding whether it is
valid is the services' job, and what they refuse goes to the dead-letter topic.
"""

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import hl7
import pydicom
from kafka import KafkaProducer
from kafka.errors import KafkaError
from pydicom.errors import InvalidDicomError

from cxrwatch.core import topics
from cxrwatch.core.errors import PublishFailed
from cxrwatch.core.kafka import Output, client_options, new_event_id
from cxrwatch.core.settings import ServiceSettings

logger = logging.getLogger(__name__)

CONTENT_TYPES = {
    "dicom": "application/dicom",
    "fhir": "application/fhir+json",
    "hl7": "x-application/hl7-v2+er7",
}
TOPICS = {
    "dicom": topics.DICOM_INSTANCES,
    "fhir": topics.EHR_OBSERVATIONS,
    "hl7": topics.EHR_OBSERVATIONS,
}


@dataclass(frozen=True)
class Delivery:
    """Where a file went."""

    path: Path
    topic: str
    partition: int
    offset: int


class Publisher:
    """A producer that waits for every record to be acknowledged."""

    def __init__(self, settings: ServiceSettings) -> None:
        options = client_options(settings)
        self._producer = KafkaProducer(
            acks="all",
            max_request_size=settings.kafka_max_message_bytes,
            client_id="cxrwatch-cli",
            **options,
        )

    def publish(self, kind: str, path: Path, key: str | None = None) -> Delivery:
        """Send one file; raise :class:`PublishFailed` if the broker refuses it."""
        body = path.read_bytes()
        output = Output(
            topic=TOPICS[kind],
            key=key or patient_key_of(kind, body),
            value=body,
            ce_type=f"org.cxrwatch.{kind}.v1",
            ce_id=new_event_id(),
            ce_source="cxrwatch/cli",
            content_type=CONTENT_TYPES[kind],
        )
        future = self._producer.send(
            output.topic,
            value=output.value,
            key=output.key.encode(),
            headers=output.headers(),
        )
        try:
            metadata = future.get(timeout=60)
        except KafkaError as exc:
            raise PublishFailed(
                f"{path.name} ({len(body)} bytes) was not accepted by "
                f"{output.topic}: {exc}"
            ) from exc
        return Delivery(path, output.topic, metadata.partition, metadata.offset)

    def close(self) -> None:
        """Flush and close the producer."""
        self._producer.flush()
        self._producer.close()


def patient_key_of(kind: str, body: bytes) -> str:
    """The patient a file is about, for the record key; ``unknown`` if unsure."""
    try:
        if kind == "dicom":
            return _dicom_patient(body)
        if kind == "fhir":
            return _fhir_patient(json.loads(body))
        return _hl7_patient(body.decode("utf-8", "replace"))
    except (
        ValueError,
        KeyError,
        TypeError,
        IndexError,
        RecursionError,
        InvalidDicomError,
        AttributeError,
        hl7.ParseException,
    ):
        return "unknown"


def _dicom_patient(body: bytes) -> str:
    from io import BytesIO

    dataset = pydicom.dcmread(BytesIO(body), stop_before_pixels=True, force=True)
    return str(dataset.get("PatientID") or "unknown")


def _fhir_patient(resource: dict[str, object]) -> str:
    kind = resource.get("resourceType")
    if kind == "Patient":
        return str(resource["id"])
    if kind == "Bundle":
        for entry in resource.get("entry", []):  # type: ignore[attr-defined]
            found = _fhir_patient(entry.get("resource", {}))
            if found != "unknown":
                return found
        return "unknown"
    subject = resource.get("subject")
    if isinstance(subject, dict) and "reference" in subject:
        return str(subject["reference"]).rsplit("/", 1)[-1]
    return "unknown"


def _hl7_patient(text: str) -> str:
    segments = text.lstrip("\ufeff\x0b").replace("\r\n", "\r").replace("\n", "\r")
    message = hl7.parse(segments.strip("\x1c\r") + "\r")
    return str(message.segment("PID")[3][0][0]) or "unknown"
