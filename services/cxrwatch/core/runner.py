"""Start a stream service from its settings: topics, logging, the loop."""

import asyncio
import logging
from collections.abc import Callable
from typing import TypeVar

from cxrwatch.core.kafka import ensure_topics
from cxrwatch.core.logs import configure_logging
from cxrwatch.core.settings import ServiceSettings
from cxrwatch.core.stream import Processor, StreamService

logger = logging.getLogger(__name__)

SettingsT = TypeVar("SettingsT", bound=ServiceSettings)


def run_stream_service(
    build: Callable[[SettingsT], Processor], settings: SettingsT
) -> None:
    """Build the processor from ``settings`` and run it until SIGTERM or SIGINT."""
    configure_logging(settings.log_level)
    ensure_topics(settings)
    asyncio.run(_serve(build, settings))


async def _serve(build: Callable[[SettingsT], Processor], settings: SettingsT) -> None:
    # Kafka, Redis and gRPC asyncio clients bind to the loop they are made in.
    await StreamService(build(settings), settings).run()
