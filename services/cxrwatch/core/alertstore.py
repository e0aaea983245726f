"""Alerts, acknowledgements and risk history in Redis: written by the alerter,
read by the API.

Layout (``<p>`` is the prefix, ``cxr`` by default):

* ``<p>:alert:<alert_id>``: hash with ``alert`` (the Alert JSON), ``status``
  (open, acknowledged, resolved) and who/when fields;
* ``<p>:alerts``: sorted set of alert ids by raised time;
  ``<p>:alerts:patient:<patient_key>``: the same per patient;
* ``<p>:alerts:feed``: a Redis stream with one entry per new alert, whose
  entry ids give the live feed its resumable order;
* ``<p>:scores:patient:<patient_key>``: sorted set of score ids by as-of time
  (the risk history), trimmed to ``history_days``, with the score JSON in the
  hash ``<p>:scores:body:<patient_key>``;
* ``<p>:scores:latest``: hash of patient key → latest score JSON;
* ``<p>:audit``: a stream of acknowledgements and resolutions, append-only.

Recording an alert is atomic and idempotent by alert id: a redelivered alert
adds nothing, so the API sees each alert once.
"""

import json
from datetime import UTC, datetime

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from cxrwatch.core.errors import DependencyUnavailable
from cxrwatch.core.events import Alert, RiskScore

_RECORD_ALERT = """
if redis.call('HSETNX', KEYS[1], 'alert', ARGV[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], 'status', 'open')
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[3])
redis.call('ZADD', KEYS[3], ARGV[2], ARGV[3])
redis.call('XADD', KEYS[4], 'MAXLEN', '~', ARGV[4], '*', 'alert_id', ARGV[3])
return 1
"""

_RECORD_SCORE = """
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
redis.call('ZADD', KEYS[1], ARGV[3], ARGV[1])
local old = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[4])
if #old > 0 then
  redis.call('ZREM', KEYS[1], unpack(old))
  redis.call('HDEL', KEYS[2], unpack(old))
end
local latest = redis.call('HGET', KEYS[3], ARGV[5])
if not latest or cjson.decode(latest)['as_of_epoch'] <= tonumber(ARGV[3]) then
  redis.call('HSET', KEYS[3], ARGV[5], ARGV[6])
end
return 1
"""


class AlertStore:
    """Alerts and scores as the API serves them."""

    def __init__(
        self, redis: aioredis.Redis, prefix: str = "cxr", history_days: float = 30.0
    ) -> None:
        self._redis = redis
        self._p = prefix
        self._history_s = history_days * 86400
        self._record_alert = redis.register_script(_RECORD_ALERT)
        self._record_score = redis.register_script(_RECORD_SCORE)

    def alert_key(self, alert_id: str) -> str:
        """Key of one alert's hash."""
        return f"{self._p}:alert:{alert_id}"

    @property
    def alerts_key(self) -> str:
        """Key of the index of all alerts by time."""
        return f"{self._p}:alerts"

    def patient_alerts_key(self, patient_key: str) -> str:
        """Key of one patient's alert index."""
        return f"{self._p}:alerts:patient:{patient_key}"

    @property
    def feed_key(self) -> str:
        """Key of the stream of new alerts."""
        return f"{self._p}:alerts:feed"

    @property
    def audit_key(self) -> str:
        """Key of the audit stream."""
        return f"{self._p}:audit"

    def history_key(self, patient_key: str) -> str:
        """Key of one patient's risk history."""
        return f"{self._p}:scores:patient:{patient_key}"

    def history_body_key(self, patient_key: str) -> str:
        """Key of the hash holding one patient's score bodies."""
        return f"{self._p}:scores:body:{patient_key}"

    @property
    def latest_key(self) -> str:
        """Key of the latest score per patient."""
        return f"{self._p}:scores:latest"

    async def record_alert(self, alert: Alert, feed_length: int = 100_000) -> bool:
        """Store a new alert; return False when it was already stored."""
        keys = [
            self.alert_key(alert.alert_id),
            self.alerts_key,
            self.patient_alerts_key(alert.patient_key),
            self.feed_key,
        ]
        args = [
            alert.model_dump_json(),
            alert.raised_at.timestamp(),
            alert.alert_id,
            feed_length,
        ]
        try:
            return bool(await self._record_alert(keys=keys, args=args))
        except RedisError as exc:
            raise DependencyUnavailable(f"Redis: {exc}") from exc

    async def record_score(self, score: RiskScore) -> None:
        """Add a score to the patient's history and keep the latest one."""
        as_of = score.as_of.timestamp()
        body = score.model_dump_json()
        latest = json.dumps({"as_of_epoch": as_of, "score": json.loads(body)})
        keys = [
            self.history_key(score.patient_key),
            self.history_body_key(score.patient_key),
            self.latest_key,
        ]
        args = [
            score.score_id,
            body,
            as_of,
            as_of - self._history_s,
            score.patient_key,
            latest,
        ]
        try:
            await self._record_score(keys=keys, args=args)
        except RedisError as exc:
            raise DependencyUnavailable(f"Redis: {exc}") from exc

    async def set_status(
        self, alert_id: str, status: str, actor: str, note: str | None = None
    ) -> dict[str, str] | None:
        """Acknowledge or resolve an alert and append it to the audit trail."""
        key = self.alert_key(alert_id)
        now = datetime.now(UTC).isoformat()
        try:
            if not await self._redis.exists(key):
                return None
            fields = {"status": status, f"{status}_by": actor, f"{status}_at": now}
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.hset(key, mapping=fields)
                pipe.xadd(
                    self.audit_key,
                    {
                        "alert_id": alert_id,
                        "action": status,
                        "actor": actor,
                        "at": now,
                        "note": note or "",
                    },
                )
                await pipe.execute()
            return await self.get_alert(alert_id)
        except RedisError as exc:
            raise DependencyUnavailable(f"Redis: {exc}") from exc

    async def get_alert(self, alert_id: str) -> dict[str, str] | None:
        """The stored fields of one alert, or None."""
        try:
            raw = await self._redis.hgetall(self.alert_key(alert_id))
        except RedisError as exc:
            raise DependencyUnavailable(f"Redis: {exc}") from exc
        if not raw:
            return None
        return {k.decode(): v.decode() for k, v in raw.items()}

    async def alert_ids(
        self,
        patient_key: str | None,
        newest: float,
        oldest: float,
        limit: int,
    ) -> list[tuple[str, float]]:
        """Alert ids raised in [oldest, newest], newest first."""
        key = self.patient_alerts_key(patient_key) if patient_key else self.alerts_key
        try:
            rows = await self._redis.zrevrangebyscore(
                key, newest, oldest, start=0, num=limit, withscores=True
            )
        except RedisError as exc:
            raise DependencyUnavailable(f"Redis: {exc}") from exc
        return [(member.decode(), score) for member, score in rows]

    async def risk_history(
        self, patient_key: str, oldest: float, newest: float
    ) -> list[dict[str, object]]:
        """A patient's scores in [oldest, newest], oldest first."""
        try:
            ids = await self._redis.zrangebyscore(
                self.history_key(patient_key), oldest, newest
            )
            if not ids:
                return []
            bodies = await self._redis.hmget(self.history_body_key(patient_key), ids)
        except RedisError as exc:
            raise DependencyUnavailable(f"Redis: {exc}") from exc
        return [json.loads(body) for body in bodies if body is not None]

    async def latest_scores(self) -> dict[str, dict[str, object]]:
        """The latest score of every patient, by patient key."""
        try:
            rows = await self._redis.hgetall(self.latest_key)
        except RedisError as exc:
            raise DependencyUnavailable(f"Redis: {exc}") from exc
        return {k.decode(): json.loads(v)["score"] for k, v in rows.items()}
