"""Prometheus metrics every stream service exports."""

from prometheus_client import Counter, Gauge, Histogram

RECORDS = Counter(
    "cxrwatch_records_total",
    "Input records finished, by outcome.",
    ["service", "topic", "outcome"],
)
DEAD_LETTERS = Counter(
    "cxrwatch_dead_letters_total",
    "Records sent to the dead-letter topic, by error class.",
    ["service", "error_class"],
)
SKIPPED = Counter(
    "cxrwatch_skipped_total",
    "Records deliberately not processed, by policy reason.",
    ["service", "reason"],
)
PUBLISH_FAILURES = Counter(
    "cxrwatch_publish_failures_total",
    "Outputs the broker refused or did not acknowledge.",
    ["service", "topic"],
)
PROCESSING_SECONDS = Histogram(
    "cxrwatch_batch_seconds",
    "Time from poll to commit of one batch.",
    ["service"],
)
READY = Gauge("cxrwatch_ready", "1 when the service is ready.", ["service"])
