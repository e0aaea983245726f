"""Run the imaging service: ``python -m cxrwatch.imaging``."""

import asyncio

from cxrwatch.core.kafka import ensure_topics
from cxrwatch.core.logs import configure_logging
from cxrwatch.core.stream import StreamService
from cxrwatch.imaging.service import ImagingProcessor, ImagingSettings


async def serve(settings: ImagingSettings) -> None:
    """Consume until SIGTERM or SIGINT."""
    # TODO: back to core.runner.run_stream_service once it builds the
    # StreamService inside the event loop (aiokafka refuses to be created
    # outside one, so today it raises before the first poll).
    await StreamService(ImagingProcessor(settings), settings).run()


def main() -> None:
    """Read settings from the environment, create topics, run the service."""
    settings = ImagingSettings()
    configure_logging(settings.log_level)
    ensure_topics(settings)
    asyncio.run(serve(settings))


if __name__ == "__main__":
    main()
