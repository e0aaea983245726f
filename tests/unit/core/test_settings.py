"""Settings every stream service shares, read from CXRWATCH_* variables."""

import pytest
from cxrwatch.core.settings import ServiceSettings
from pydantic import ValidationError


def test_the_poll_settings_come_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CXRWATCH_KAFKA_FETCH_MAX_WAIT_MS", "35")
    monkeypatch.setenv("CXRWATCH_BATCH_WAIT_MS", "7.5")

    settings = ServiceSettings()

    assert settings.kafka_fetch_max_wait_ms == 35
    assert settings.batch_wait_ms == 7.5


def test_a_fetch_wait_of_zero_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    # Tansu answers a fetch with max_wait 0 with no records at all: a consumer
    # set so would read nothing, silently.
    monkeypatch.setenv("CXRWATCH_KAFKA_FETCH_MAX_WAIT_MS", "0")

    with pytest.raises(ValidationError, match="kafka_fetch_max_wait_ms"):
        ServiceSettings()


def test_a_negative_batch_wait_is_refused() -> None:
    with pytest.raises(ValidationError, match="batch_wait_ms"):
        ServiceSettings(batch_wait_ms=-1)
