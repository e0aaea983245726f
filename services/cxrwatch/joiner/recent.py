"""Recent radiographs per patient, kept in Redis for re-scoring.

Layout (``<prefix>`` defaults to ``cxr``):

* ``<prefix>:joiner:radiographs:<patient_key>``: sorted set of radiograph ids,
  scored by acquisition time (epoch seconds);
* ``<prefix>:joiner:radiograph:<radiograph_id>``: the radiograph event as JSON.

Both expire once no radiograph of the patient is inside the validity window,
so memory is bounded by the radiographs of the last ``validity`` hours.
"""

from datetime import datetime, timedelta

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from cxrwatch.core.errors import DependencyUnavailable
from cxrwatch.core.events import Radiograph, decode_event


class RecentRadiographs:
    """Radiographs acquired within the validity window, by patient."""

    def __init__(
        self, redis: aioredis.Redis, validity: timedelta, prefix: str = "cxr"
    ) -> None:
        self._redis = redis
        self._validity = validity
        self._prefix = prefix

    def _index(self, patient_key: str) -> str:
        return f"{self._prefix}:joiner:radiographs:{patient_key}"

    def _body(self, radiograph_id: str) -> str:
        return f"{self._prefix}:joiner:radiograph:{radiograph_id}"

    async def remember(self, radiograph: Radiograph) -> None:
        """Keep a radiograph for re-scoring; idempotent by radiograph id."""
        acquired = radiograph.acquired_at.timestamp()
        ttl = int(self._validity.total_seconds() + 86400)
        index = self._index(radiograph.patient_key)
        try:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.set(
                    self._body(radiograph.radiograph_id),
                    radiograph.model_dump_json(),
                    ex=ttl,
                )
                pipe.zadd(index, {radiograph.radiograph_id: acquired})
                pipe.expire(index, ttl)
                await pipe.execute()
        except RedisError as exc:
            raise DependencyUnavailable(f"Redis: {exc}") from exc

    async def acquired_between(
        self, patient_key: str, start: datetime, end: datetime
    ) -> list[Radiograph]:
        """Radiographs acquired in [start, end], oldest first."""
        try:
            ids = await self._redis.zrangebyscore(
                self._index(patient_key), start.timestamp(), end.timestamp()
            )
            if not ids:
                return []
            bodies = await self._redis.mget([self._body(_text(i)) for i in ids])
        except RedisError as exc:
            raise DependencyUnavailable(f"Redis: {exc}") from exc
        return [decode_event(Radiograph, body) for body in bodies if body is not None]


def _text(reply: object) -> str:
    """A Redis reply item as text (the client returns bytes)."""
    return reply.decode() if isinstance(reply, bytes) else str(reply)
