"""Run the scorer: ``python -m cxrwatch.scorer``."""

import asyncio

from cxrwatch.core.kafka import ensure_topics
from cxrwatch.core.logs import configure_logging
from cxrwatch.core.runner import run_stream_service
from cxrwatch.scorer.filling import FillingStreamService
from cxrwatch.scorer.service import ScorerSettings, build_processor


def main() -> None:
    """Start the scorer with settings from the environment."""
    settings = ScorerSettings()
    if settings.micro_batch_wait_ms <= 0:
        run_stream_service(build_processor, settings)
        return
    configure_logging(settings.log_level)
    ensure_topics(settings)
    asyncio.run(_serve_filling(settings))


async def _serve_filling(settings: ScorerSettings) -> None:
    # Built inside the loop: the Kafka and gRPC asyncio clients bind to it.
    scorer = build_processor(settings)
    wait_s = settings.micro_batch_wait_ms / 1000
    service = FillingStreamService(
        scorer, settings, target=lambda: scorer.batch_size, wait_s=wait_s
    )
    await service.run()


if __name__ == "__main__":
    main()
