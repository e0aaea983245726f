"""Put DICOM, FHIR and HL7 v2 files on the input topics.

Each record gets the CloudEvents headers and a content type, and is keyed by
the patient when the file says who it is, so one patient's messages stay in
order on one partition. The file is sent as it is: deciding whether it is
valid is the services' job, and what they refuse goes to the dead-letter topic.
Two kinds of file are not sent, each with a one-line reason: one larger than a
record may be (``CXRWATCH_KAFKA_MAX_MESSAGE_BYTES``), and an HL7 v2 or FHIR
file that does not even parse, read with the clinical service's own parser so
the reason is the one it would dead-letter; a key guessed from such a file
would put it on some other patient's partition. A file that parses but names
no patient is sent keyed ``unknown``.
"""

import logging
from dataclasses import dataclass
from pathlib import Path

import pydicom
from kafka import KafkaProducer
from kafka.errors import KafkaError
from pydicom.errors import InvalidDicomError

from cxrwatch.clinical.fhir_json import fhir_document
from cxrwatch.clinical.hl7v2 import first_patient_id, message_segments
from cxrwatch.core import topics
from cxrwatch.core.errors import InvalidInput, PublishFailed
from cxrwatch.core.kafka import Output, blocking_client_options, new_event_id
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
        options = blocking_client_options(settings)
        self._max_bytes = settings.kafka_max_message_bytes
        self._producer = KafkaProducer(
            acks="all",
            max_request_size=settings.kafka_max_message_bytes,
            client_id="cxrwatch-cli",
            **options,
        )

    def publish(self, kind: str, path: Path, key: str | None = None) -> Delivery:
        """Send one file and wait for the broker's acknowledgement.

        Raises
        ------
        PublishFailed
            If the file is larger than a record may be, or the broker refuses it.
        InvalidInput
            If an HL7 v2 or FHIR file to be keyed here does not parse.
        """
        self._check_size(path)
        body = path.read_bytes()
        try:
            patient = key or patient_key_of(kind, body)
        except InvalidInput as exc:
            raise InvalidInput(f"{path.name} not sent: {exc}") from exc
        output = Output(
            topic=TOPICS[kind],
            key=patient,
            value=body,
            ce_type=f"org.cxrwatch.{kind}.v1",
            ce_id=new_event_id(),
            ce_source="cxrwatch/cli",
            content_type=CONTENT_TYPES[kind],
        )
        try:
            # send() itself raises for a record over max_request_size.
            future = self._producer.send(
                output.topic,
                value=output.value,
                key=output.key.encode(),
                headers=output.headers(),
            )
            metadata = future.get(timeout=60)
        except KafkaError as exc:
            raise PublishFailed(
                f"{path.name} ({len(body)} bytes) was not accepted by "
                f"{output.topic}: {exc}"
            ) from exc
        return Delivery(path, output.topic, metadata.partition, metadata.offset)

    def _check_size(self, path: Path) -> None:
        size = path.stat().st_size
        if size > self._max_bytes:
            raise PublishFailed(
                f"{path.name} is {_mib(size)} ({size} bytes), over the "
                f"{_mib(self._max_bytes)} a record may hold; not sent (the limit is "
                f"CXRWATCH_KAFKA_MAX_MESSAGE_BYTES={self._max_bytes}: raise it for "
                "the CLI and the pipeline alike)"
            )

    def close(self) -> None:
        """Flush and close the producer."""
        self._producer.flush()
        self._producer.close()


def patient_key_of(kind: str, body: bytes) -> str:
    """The patient a file is about, for the record key; ``unknown`` if unsure.

    Raises
    ------
    InvalidInput
        If an HL7 v2 or FHIR file does not parse, with the clinical service's
        reason.
    """
    if kind == "hl7":
        return first_patient_id(message_segments(body)) or "unknown"
    try:
        if kind == "fhir":
            return _fhir_patient(fhir_document(body))
        return _dicom_patient(body)
    except (
        ValueError,
        KeyError,
        TypeError,
        IndexError,
        InvalidDicomError,
        AttributeError,
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


def _mib(size: int) -> str:
    return f"{size / 2**20:.1f} MiB"
