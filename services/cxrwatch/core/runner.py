"""Start a stream service from its settings: topics, logging, the loop."""

import asyncio
import logging

from cxrwatch.core.kafka import ensure_topics
from cxrwatch.core.logs import configure_logging
from cxrwatch.core.settings import ServiceSettings
from cxrwatch.core.stream import Processor, StreamService

logger = logging.getLogger(__name__)


def run_stream_service(processor: Processor, settings: ServiceSettings) -> None:
    """Run ``processor`` until SIGTERM or SIGINT."""
    configure_logging(settings.log_level)
    ensure_topics(settings)
    asyncio.run(_serve(processor, settings))


async def _serve(processor: Processor, settings: ServiceSettings) -> None:
    # aiokafka clients must be created inside the running loop.
    await StreamService(processor, settings).run()
