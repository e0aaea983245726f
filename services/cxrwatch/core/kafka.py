"""Kafka clients configured from settings, CloudEvents headers and topic creation.

aiokafka serves the stream services (consumer groups with manual commits);
kafka-python serves the command line and topic administration.
"""

import logging
import ssl
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from kafka.admin import KafkaAdminClient, NewTopic
from kafka.errors import (
    KafkaError,
    TopicAlreadyExistsError,
    TopicAuthorizationFailedError,
)

from cxrwatch.core import topics
from cxrwatch.core.errors import DependencyUnavailable
from cxrwatch.core.settings import ServiceSettings

logger = logging.getLogger(__name__)

CE_SPECVERSION = "1.0"


@dataclass(frozen=True)
class Output:
    """One record a service produces, in CloudEvents binary mode."""

    topic: str
    key: str
    value: bytes
    ce_type: str
    ce_id: str
    ce_source: str
    content_type: str = "application/json"
    ce_time: datetime = field(default_factory=lambda: datetime.now(UTC))
    extra_headers: tuple[tuple[str, bytes], ...] = ()

    def headers(self) -> list[tuple[str, bytes]]:
        """Kafka headers per the CloudEvents Kafka protocol binding."""
        return [
            ("ce_specversion", CE_SPECVERSION.encode()),
            ("ce_id", self.ce_id.encode()),
            ("ce_type", self.ce_type.encode()),
            ("ce_source", self.ce_source.encode()),
            ("ce_time", self.ce_time.isoformat().encode()),
            ("content-type", self.content_type.encode()),
            *self.extra_headers,
        ]


def headers_dict(headers: Iterable[tuple[str, bytes]] | None) -> dict[str, str]:
    """Record headers as text, undecodable bytes replaced."""
    return {k: v.decode("utf-8", "replace") for k, v in headers or ()}


def new_event_id() -> str:
    """A random CloudEvents id for inputs that have no natural one."""
    return str(uuid.uuid4())


def client_options(settings: ServiceSettings) -> dict[str, Any]:
    """Connection options shared by aiokafka and kafka-python."""
    options: dict[str, Any] = {
        "bootstrap_servers": settings.kafka_bootstrap.split(","),
        "security_protocol": settings.kafka_security_protocol,
    }
    if settings.kafka_security_protocol.startswith("SASL"):
        password = settings.kafka_sasl_password
        options |= {
            "sasl_mechanism": settings.kafka_sasl_mechanism or "SCRAM-SHA-512",
            "sasl_plain_username": settings.kafka_sasl_username,
            "sasl_plain_password": password.get_secret_value() if password else None,
        }
    if settings.kafka_security_protocol in ("SSL", "SASL_SSL"):
        cafile = str(settings.kafka_ssl_cafile) if settings.kafka_ssl_cafile else None
        options["ssl_context"] = ssl.create_default_context(cafile=cafile)
    return options


def blocking_client_options(settings: ServiceSettings) -> dict[str, Any]:
    """Options for kafka-python's clients: the shared ones and the bootstrap wait."""
    return client_options(settings) | {
        "bootstrap_timeout_ms": settings.kafka_bootstrap_timeout_ms
    }


def topic_configs(topic: str, settings: ServiceSettings) -> dict[str, str]:
    """Per-topic configuration: large records allowed where DICOM travels."""
    if topic in topics.LARGE_MESSAGE_TOPICS:
        return {"max.message.bytes": str(settings.kafka_max_message_bytes)}
    return {}


def ensure_topics(
    settings: ServiceSettings,
    names: Iterable[str] = topics.ALL,
    partitions: int = 3,
    replication: int = 1,
) -> None:
    """Create the topics that do not exist yet.

    Raises
    ------
    DependencyUnavailable
        If the brokers cannot be reached.
    """
    if not settings.kafka_create_topics:
        return
    try:
        admin = KafkaAdminClient(
            client_id="cxrwatch-admin", **blocking_client_options(settings)
        )
    except KafkaError as exc:
        raise DependencyUnavailable(
            f"Kafka at {settings.kafka_bootstrap} does not answer: {exc}"
        ) from exc
    try:
        existing = set(admin.list_topics())
        wanted = [
            NewTopic(
                name,
                partitions,
                replication,
                topic_configs=topic_configs(name, settings),
            )
            for name in names
            if name not in existing
        ]
        if wanted:
            admin.create_topics(wanted)
            logger.info("created topics %s", [t.name for t in wanted])
    except TopicAlreadyExistsError:
        logger.info("topics were created concurrently")
    except TopicAuthorizationFailedError:
        logger.warning(
            "not allowed to create topics; they must exist already "
            "(set CXRWATCH_KAFKA_CREATE_TOPICS=false where an operator owns them)"
        )
    finally:
        admin.close()


def as_mapping(headers: Mapping[str, str]) -> list[tuple[str, bytes]]:
    """Headers for a producer from a text mapping."""
    return [(k, v.encode()) for k, v in headers.items()]
