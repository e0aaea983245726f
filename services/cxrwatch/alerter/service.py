"""Alerter: risk scores in, deterioration alerts out.

* Consumes ``risk.scores.v1`` (keyed by patient, so a patient's scores arrive
  in order) and applies :mod:`cxrwatch.alerter.policy` to each against the
  patient's remembered risk.
* Emits an ``Alert`` on ``alerts.deterioration.v1`` when the policy says so,
  with what changed: previous and new risk, the inputs that moved most, NEWS2.
  The alert id derives from the score id.
* Every decision is written to Redis, with the patient's new state, in one
  transaction before the alert is produced. A redelivered score finds its
  decision and re-emits the same alert instead of deciding again, so a crash
  between the decision and the commit neither loses nor changes an alert;
  the API's store keeps each alert id once.
* Records every score in the patient's risk history for the API.
* Commits through the shared runtime after the alert is acknowledged.
  Undecodable scores are dead-lettered; Redis down pauses consumption.
"""

import logging
from collections.abc import Sequence
from datetime import timedelta

import redis.asyncio as aioredis
from aiokafka import ConsumerRecord
from pydantic import Field
from redis.exceptions import RedisError

from cxrwatch.alerter.policy import AlertPolicy, Decision, PatientRisk, decide
from cxrwatch.core import topics
from cxrwatch.core.alertstore import AlertStore
from cxrwatch.core.errors import DependencyUnavailable
from cxrwatch.core.events import Alert, FeatureChange, RiskScore, decode_event
from cxrwatch.core.ids import deterministic_id, patient_ref
from cxrwatch.core.kafka import Output
from cxrwatch.core.manifest import FeatureManifest, load_manifest
from cxrwatch.core.settings import ServiceSettings
from cxrwatch.core.stream import Outcome, process_each

logger = logging.getLogger(__name__)

_NO_ALERT = b"-"


class AlerterSettings(ServiceSettings):
    """Settings of the alerter and its policy."""

    band_thresholds: tuple[float, float, float] = Field(
        (0.3, 0.6, 0.85), description="Lower edges of moderate, high and critical."
    )
    alert_from_band: str = Field("high", description="Lowest band that alerts.")
    hysteresis: float = Field(0.05, ge=0, description="Margin before a band drops.")
    rise_step: float = Field(0.2, gt=0, description="Rise that alerts by itself.")
    rise_window_hours: float = Field(24.0, gt=0, description="Window of that rise.")
    cool_down_hours: float = Field(6.0, ge=0, description="Quiet time after an alert.")
    top_changes: int = Field(3, ge=1, description="Inputs listed in an alert.")
    decision_ttl_days: float = Field(14.0, gt=0, description="Memory of decisions.")

    def policy(self) -> AlertPolicy:
        """The alert policy these settings describe."""
        return AlertPolicy(
            thresholds=self.band_thresholds,
            alert_from=self.alert_from_band,  # type: ignore[arg-type]
            hysteresis=self.hysteresis,
            rise_step=self.rise_step,
            rise_window=timedelta(hours=self.rise_window_hours),
            cool_down=timedelta(hours=self.cool_down_hours),
        )


class Alerter:
    """The alerter's processor."""

    name = "alerter"
    input_topics = (topics.RISK_SCORES,)

    def __init__(self, settings: AlerterSettings, manifest: FeatureManifest) -> None:
        self._settings = settings
        self._manifest = manifest
        self._policy = settings.policy()
        self._redis = aioredis.from_url(settings.redis_url)
        self._store = AlertStore(self._redis, prefix=settings.redis_prefix)
        self._p = settings.redis_prefix

    async def start(self) -> None:
        """Nothing to open: Redis connects on first use."""

    async def stop(self) -> None:
        """Close the Redis pool."""
        await self._redis.aclose()

    async def process(self, records: Sequence[ConsumerRecord]) -> list[Outcome]:
        """Decide on each score in order."""
        return await process_each(records, self._handle)

    async def _handle(self, record: ConsumerRecord) -> list[Output]:
        score = decode_event(RiskScore, record.value)
        if score.shadow:
            return []
        alert = await self._decided(score)
        if alert is None:
            alert = await self._decide(score)
        await self._store.record_score(score)
        if alert is None:
            return []
        await self._store.record_alert(alert)
        return [
            Output(
                topic=topics.ALERTS,
                key=alert.patient_key,
                value=alert.model_dump_json().encode(),
                ce_type="org.cxrwatch.alert.v1",
                ce_id=alert.alert_id,
                ce_source="cxrwatch/alerter",
            )
        ]

    def _decision_key(self, score_id: str) -> str:
        return f"{self._p}:alerter:decision:{score_id}"

    def _state_key(self, patient_key: str) -> str:
        return f"{self._p}:alerter:patient:{patient_key}"

    async def _decided(self, score: RiskScore) -> Alert | None:
        """The alert already decided for this score, if it was decided before."""
        try:
            stored = await self._redis.get(self._decision_key(score.score_id))
        except RedisError as exc:
            raise DependencyUnavailable(f"Redis: {exc}") from exc
        if stored is None or stored == _NO_ALERT:
            return None
        return decode_event(Alert, stored)

    async def _decide(self, score: RiskScore) -> Alert | None:
        state_key = self._state_key(score.patient_key)
        decision_key = self._decision_key(score.score_id)
        try:
            if await self._redis.exists(decision_key):
                return None
            raw = await self._redis.get(state_key)
            previous = PatientRisk.model_validate_json(raw) if raw else None
            decision = decide(
                self._policy,
                previous,
                score.p_critical,
                score.as_of,
                score.clinical_values,
            )
            alert = self._alert(score, decision)
            ttl = int(self._settings.decision_ttl_days * 86400)
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.set(state_key, decision.state.model_dump_json(), ex=ttl)
                pipe.set(
                    decision_key,
                    alert.model_dump_json() if alert else _NO_ALERT,
                    ex=ttl,
                )
                await pipe.execute()
        except RedisError as exc:
            raise DependencyUnavailable(f"Redis: {exc}") from exc
        if alert is not None:
            logger.info(
                "alert %s for %s: %s to %s (p=%.2f)",
                alert.alert_id,
                patient_ref(score.patient_key),
                alert.reason,
                alert.band,
                alert.p_critical,
            )
        return alert

    def _alert(self, score: RiskScore, decision: Decision) -> Alert | None:
        if decision.reason is None:
            return None
        previous = decision.previous
        return Alert(
            alert_id=deterministic_id("alert", score.score_id),
            patient_key=score.patient_key,
            score_id=score.score_id,
            radiograph_id=score.radiograph_id,
            raised_at=score.as_of,
            reason=decision.reason,
            band=decision.state.band,
            previous_band=previous.band if previous else None,
            p_critical=score.p_critical,
            previous_p_critical=previous.p_critical if previous else None,
            progression_risk=score.progression_risk,
            changes=self._changes(previous, score),
            news2=score.news2,
            model_name=score.model_name,
            model_version=score.model_version,
        )

    def _changes(
        self, previous: PatientRisk | None, score: RiskScore
    ) -> list[FeatureChange]:
        """The inputs that moved most, in units of their population spread."""
        before = previous.clinical_values if previous else {}
        moved = []
        for feature in self._manifest.features:
            now = score.clinical_values.get(feature.name)
            then = before.get(feature.name)
            if now is None or then is None:
                size = 0.0 if now is None else abs(feature.normalise(now))
            else:
                size = abs(now - then) / feature.std
            if size > 0:
                moved.append((size, feature.name, then, now, feature.unit))
        moved.sort(reverse=True)
        return [
            FeatureChange(feature=name, previous=then, current=now, unit=unit)
            for _, name, then, now, unit in moved[: self._settings.top_changes]
        ]


def build_processor(settings: AlerterSettings) -> Alerter:
    """The alerter, with the manifest read from the model repository."""
    return Alerter(settings, load_manifest(settings.manifest_path))
