"""The stream runtime under a fault that needs no broker to show: SIGTERM while
the processor still waits for a dependency at start (the scorer waiting for
Triton) must end the service promptly, not after the orchestrator's grace
period, and without a traceback.
"""

import asyncio
from collections.abc import Sequence

from aiokafka import ConsumerRecord
from cxrwatch.core.settings import ServiceSettings
from cxrwatch.core.stream import Outcome, StreamService


class Waiter:
    """A processor whose start waits for a dependency that never comes."""

    name = "waiter"
    input_topics: Sequence[str] = ("never.used",)

    async def start(self) -> None:
        while True:
            await asyncio.sleep(0.1)

    async def stop(self) -> None:
        """Nothing to close."""

    async def process(self, records: Sequence[ConsumerRecord]) -> list[Outcome]:
        raise AssertionError("never polled")


async def test_sigterm_while_the_processor_waits_at_start_stops_promptly() -> None:
    # Nothing listens on port 9: the service never gets as far as the broker.
    settings = ServiceSettings(kafka_bootstrap="127.0.0.1:9", health_port=0)
    service = StreamService(Waiter(), settings)
    running = asyncio.create_task(service.run())
    await asyncio.sleep(0.5)

    service.request_stop()

    await asyncio.wait_for(running, 5)
