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

The API reads through the methods below ``record_score`` and changes an alert
only through :meth:`AlertStore.transition`, which checks the current status,
writes who/when/note and appends the audit entry in one script.
"""

import json
from datetime import UTC, datetime
from typing import Any, cast

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from cxrwatch.core.errors import CxrwatchError, DependencyUnavailable
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

# KEYS: alert hash, audit stream. ARGV: new status, actor, time, note, alert id,
# then the statuses it may change from. Returns {0} when the alert is unknown,
# {1, status} when its status forbids the change, {2, audit entry id} when done.
_TRANSITION = """
local status = redis.call('HGET', KEYS[1], 'status')
if not status then return {0} end
local allowed = false
for i = 6, #ARGV do
  if ARGV[i] == status then allowed = true end
end
if not allowed then return {1, status} end
redis.call('HSET', KEYS[1], 'status', ARGV[1], ARGV[1] .. '_by', ARGV[2],
  ARGV[1] .. '_at', ARGV[3], ARGV[1] .. '_note', ARGV[4])
local entry = redis.call('XADD', KEYS[2], '*', 'alert_id', ARGV[5],
  'action', ARGV[1], 'actor', ARGV[2], 'at', ARGV[3], 'note', ARGV[4])
return {2, entry}
"""

FEED_START = "0-0"
"""Feed position before the first entry."""


def stream_id_order(entry_id: str) -> tuple[int, int]:
    """A Redis stream entry id as a comparable ``(milliseconds, sequence)``."""
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


def _text(value: object) -> str | None:
    if isinstance(value, bytes):
        return value.decode()
    return None if value is None else str(value)


def _member(reply: object) -> str:
    """A Redis reply item that cannot be nil, as text."""
    return reply.decode() if isinstance(reply, bytes) else str(reply)


class TransitionRefused(CxrwatchError):
    """The alert's current status does not allow the requested change."""

    def __init__(self, alert_id: str, status: str) -> None:
        super().__init__(f"alert {alert_id} is {status}")
        self.status = status


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
        self._transition = redis.register_script(_TRANSITION)

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
        args: list[str | float | int] = [
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
        args: list[str | float] = [
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
            fields: dict[str | bytes | bytearray | memoryview | int | float, str] = {
                "status": status,
                f"{status}_by": actor,
                f"{status}_at": now,
            }
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
        return {_member(k): _member(v) for k, v in raw.items()}

    async def alert_ids(
        self,
        patient_key: str | None,
        newest: float,
        oldest: float,
        limit: int,
        offset: int = 0,
    ) -> list[tuple[str, float]]:
        """Alert ids raised in [oldest, newest], newest first.

        Ids raised at the same time come in descending byte order of the id,
        which is what makes a (time, id) position a stable cursor.
        """
        key = self.patient_alerts_key(patient_key) if patient_key else self.alerts_key
        try:
            reply = await self._redis.zrevrangebyscore(
                key, newest, oldest, start=offset, num=limit, withscores=True
            )
            # withscores=True: pairs of member and score.
            rows = cast("list[tuple[bytes, float]]", reply)
        except RedisError as exc:
            raise DependencyUnavailable(f"Redis: {exc}") from exc
        return [(_member(member), float(score)) for member, score in rows]

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
            bodies = await self._redis.hmget(
                self.history_body_key(patient_key), [_member(i) for i in ids]
            )
        except RedisError as exc:
            raise DependencyUnavailable(f"Redis: {exc}") from exc
        return [json.loads(body) for body in bodies if body is not None]

    async def latest_scores(self) -> dict[str, dict[str, object]]:
        """The latest score of every patient, by patient key."""
        try:
            rows = await self._redis.hgetall(self.latest_key)
        except RedisError as exc:
            raise DependencyUnavailable(f"Redis: {exc}") from exc
        return {_member(k): json.loads(v)["score"] for k, v in rows.items()}

    async def latest_score(self, patient_key: str) -> dict[str, object] | None:
        """The latest score of one patient, or None when it has none."""
        try:
            raw = await self._redis.hget(self.latest_key, patient_key)
        except RedisError as exc:
            raise DependencyUnavailable(f"Redis: {exc}") from exc
        if raw is None:
            return None
        score: dict[str, object] = json.loads(raw)["score"]
        return score

    async def get_alerts(self, alert_ids: list[str]) -> list[dict[str, str] | None]:
        """The stored fields of several alerts, None where one is missing."""
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                for alert_id in alert_ids:
                    pipe.hgetall(self.alert_key(alert_id))
                rows: list[Any] = await pipe.execute()
        except RedisError as exc:
            raise DependencyUnavailable(f"Redis: {exc}") from exc
        return [
            {k.decode(): v.decode() for k, v in raw.items()} if raw else None
            for raw in rows
        ]

    async def transition(
        self,
        alert_id: str,
        status: str,
        allowed_from: tuple[str, ...],
        actor: str,
        note: str | None = None,
    ) -> dict[str, str] | None:
        """Move an alert to ``status`` and audit it; None when it is unknown.

        Raises :class:`TransitionRefused` when the alert's status is not one
        of ``allowed_from`` (resolving a resolved alert, say).
        """
        now = datetime.now(UTC).isoformat()
        keys = [self.alert_key(alert_id), self.audit_key]
        args = [status, actor, now, note or "", alert_id, *allowed_from]
        try:
            outcome: Any = await self._transition(keys=keys, args=args)
        except RedisError as exc:
            raise DependencyUnavailable(f"Redis: {exc}") from exc
        if outcome[0] == 0:
            return None
        if outcome[0] == 1:
            raise TransitionRefused(alert_id, outcome[1].decode())
        return await self.get_alert(alert_id)

    async def feed_position(self) -> str:
        """Id of the newest entry of the alert feed, or ``0-0`` when empty."""
        try:
            rows: Any = await self._redis.xrevrange(self.feed_key, count=1)
        except RedisError as exc:
            raise DependencyUnavailable(f"Redis: {exc}") from exc
        return rows[0][0].decode() if rows else FEED_START

    async def read_feed(
        self, after: str, count: int, block_ms: int | None
    ) -> list[tuple[str, str]]:
        """Feed entries after ``after`` as (entry id, alert id), oldest first.

        With ``block_ms`` it waits that long for a first entry; an empty list
        means none came.
        """
        try:
            rows: Any = await self._redis.xread(
                {self.feed_key: after}, count=count, block=block_ms
            )
        except RedisError as exc:
            raise DependencyUnavailable(f"Redis: {exc}") from exc
        if not rows:
            return []
        return [
            (entry.decode(), fields[b"alert_id"].decode())
            for entry, fields in rows[0][1]
        ]

    async def feed_lost_after(self, after: str) -> bool:
        """True when entries newer than ``after`` may have left the feed.

        Deleted entries newer than ``after`` are known exactly; trimming
        (``MAXLEN``) leaves only the oldest retained id, so a position older
        than it counts as lost even when the client saw the last trimmed
        entry. A false alarm costs the client a reload, a miss an alert.
        """
        try:
            info: Any = await self._redis.xinfo_stream(self.feed_key)
        except RedisError as exc:
            if "no such key" in str(exc).lower():
                return False
            raise DependencyUnavailable(f"Redis: {exc}") from exc
        position = stream_id_order(after)
        deleted = _text(info.get("max-deleted-entry-id")) or FEED_START
        if stream_id_order(deleted) > position:
            return True
        if int(info.get("entries-added", 0)) <= int(info.get("length", 0)):
            return False
        first = info.get("first-entry")
        oldest = _text(first[0]) if first else _text(info.get("last-generated-id"))
        return oldest is not None and position < stream_id_order(oldest)

    async def audit_entries(
        self, before: str | None, count: int
    ) -> list[tuple[str, dict[str, str]]]:
        """Audit entries older than ``before`` (all when None), newest first."""
        newest = f"({before}" if before else "+"
        try:
            rows: Any = await self._redis.xrevrange(
                self.audit_key, max=newest, min="-", count=count
            )
        except RedisError as exc:
            raise DependencyUnavailable(f"Redis: {exc}") from exc
        return [
            (entry.decode(), {k.decode(): v.decode() for k, v in fields.items()})
            for entry, fields in rows
        ]

    async def ping(self) -> None:
        """Raise :class:`DependencyUnavailable` unless Redis answers."""
        try:
            await self._redis.ping()
        except RedisError as exc:
            raise DependencyUnavailable(f"Redis: {exc}") from exc
