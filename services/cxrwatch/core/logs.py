"""Logging set-up for the services: one line per event, grep-able."""

import logging


def configure_logging(level: str) -> None:
    """Send log lines to stderr as ``time level logger message``."""
    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    # aiokafka logs every rebalance step at INFO; ours say what matters.
    logging.getLogger("aiokafka").setLevel(logging.WARNING)
    # kafka-python (command line, admin) warns about its own event-loop timing.
    logging.getLogger("kafka").setLevel(logging.ERROR)
