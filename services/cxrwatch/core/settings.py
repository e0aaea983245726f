"""Settings every service shares, read from ``CXRWATCH_*`` environment variables.

Each service subclasses :class:`ServiceSettings` with its own fields. Secrets
(Kafka SASL password, a Redis password inside ``CXRWATCH_REDIS_URL``) come only
from the environment and have no defaults.
"""

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class ServiceSettings(BaseSettings):
    """Connection and runtime settings common to all stream services."""

    model_config = SettingsConfigDict(env_prefix="CXRWATCH_", extra="ignore")

    kafka_bootstrap: str = Field(
        "127.0.0.1:9092", description="Comma-separated Kafka bootstrap servers."
    )
    kafka_security_protocol: Literal[
        "PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"
    ] = Field("PLAINTEXT", description="How to reach the brokers.")
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = (
        Field(None, description="SASL mechanism when the protocol uses SASL.")
    )
    kafka_sasl_username: str | None = Field(None, description="SASL user name.")
    kafka_sasl_password: SecretStr | None = Field(None, description="SASL password.")
    kafka_ssl_cafile: Path | None = Field(None, description="CA bundle for TLS.")
    kafka_max_message_bytes: int = Field(
        32 * 1024 * 1024,
        description="Largest record the service produces or fetches (DICOM objects).",
    )
    kafka_fetch_max_wait_ms: int = Field(
        20,
        ge=1,
        description="Longest the broker holds a fetch that found no records. "
        "Apache Kafka answers as soon as a record arrives; the embedded Tansu "
        "re-checks at half the wait, then 3/4, 7/8..., so each hop waits up to "
        "about half of it. Measured on two cores (docs/performance.md): 20 gives "
        "radiograph -> score p99 71 ms against 106-115 at 50, for 29 % of a core "
        "with the whole stack idle against 14 % (47 % at 10). 0 is refused: Tansu "
        "then answers with no records at all.",
    )
    kafka_bootstrap_timeout_ms: int = Field(
        10_000,
        ge=100,
        description="How long topic creation and the command line wait for a "
        "first broker to answer before they give up with an error.",
    )
    kafka_create_topics: bool = Field(
        True, description="Create missing topics at start; off where Strimzi does."
    )
    redis_url: str = Field(
        "redis://127.0.0.1:6379/0", description="Redis holding recent observations."
    )
    redis_prefix: str = Field(
        "cxr", description="Prefix of every Redis key the services share."
    )
    model_repository: Path = Field(
        Path("models"), description="Triton model repository holding the manifest."
    )
    model_name: str = Field("cxr_fusion", description="Model to serve and score.")
    health_host: str = Field(
        "0.0.0.0",
        description="Address the health endpoints listen on (all, for the "
        "orchestrator's probes); the embedded default uses 127.0.0.1.",
    )
    health_port: int = Field(
        0, description="Port for /healthz, /readyz and /metrics; 0 turns it off."
    )
    log_level: str = Field("INFO", description="Python logging level.")
    batch_max_records: int = Field(
        64, ge=1, description="Most records taken from the broker in one poll."
    )
    batch_wait_ms: float = Field(
        0.0,
        ge=0,
        description="How long a poll that found less than a full batch waits "
        "for more; 0: take what is there (lowest latency at light load).",
    )
    retry_backoff_max_s: float = Field(
        30.0, gt=0, description="Cap of the back-off while a dependency is down."
    )
    facility_timezone: str = Field(
        "UTC", description="Time zone for timestamps that carry no offset."
    )

    @property
    def manifest_path(self) -> Path:
        """Path of the model's feature manifest."""
        return self.model_repository / self.model_name / "features.json"
