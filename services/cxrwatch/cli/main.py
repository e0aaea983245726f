"""``cxrwatch``: publish files, replay a scenario, run the embedded pipeline."""

import logging
import os
import re
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, NoReturn

import typer
from kafka.errors import KafkaError
from pydantic import ValidationError
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

from cxrwatch.cli.tables import console, print_alerts, print_dead_letters
from cxrwatch.core import topics
from cxrwatch.core.errors import CxrwatchError
from cxrwatch.core.events import first_problem
from cxrwatch.core.kafka import ensure_topics
from cxrwatch.core.logs import configure_logging
from cxrwatch.core.settings import ServiceSettings
from cxrwatch.embedded.stack import EmbeddedSettings
from cxrwatch.scenario.index import read_steps

app = typer.Typer(help="Deterioration alerts from chest radiographs and clinical data.")
# Wide enough for the alert table when the output is a file or a pipe.
logger = logging.getLogger(__name__)

Files = Annotated[list[Path], typer.Argument(exists=True, dir_okay=False)]
Bootstrap = Annotated[
    str | None,
    typer.Option(help="Kafka bootstrap servers (else CXRWATCH_KAFKA_BOOTSTRAP)."),
]


def _settings(bootstrap: str | None) -> ServiceSettings:
    """Settings from the environment; the broker of ``make run`` by default."""
    settings = ServiceSettings()
    if bootstrap is None and "CXRWATCH_KAFKA_BOOTSTRAP" not in os.environ:
        port = EmbeddedSettings().kafka_port
        bootstrap = f"127.0.0.1:{port}"
    if bootstrap:
        settings = settings.model_copy(update={"kafka_bootstrap": bootstrap})
    return settings


def _publish(kind: str, files: list[Path], bootstrap: str | None) -> None:
    from cxrwatch.cli.publish import Publisher

    settings = _settings(bootstrap)
    try:
        ensure_topics(settings)
        publisher = Publisher(settings)
    except (CxrwatchError, KafkaError) as exc:
        _fail(f"cannot reach Kafka at {settings.kafka_bootstrap}: {exc}")
    failed = 0
    try:
        for path in files:
            try:
                delivery = publisher.publish(kind, path)
            except (CxrwatchError, OSError) as exc:  # each names the file
                _error(str(exc))
                failed += 1
                continue
            where = f"{delivery.topic}[{delivery.partition}]@{delivery.offset}"
            console.print(f"{path.name} → {where}")
    finally:
        publisher.close()
    if failed:
        raise typer.Exit(1)


def _fail(message: str) -> NoReturn:
    _error(f"cxrwatch: {message}")
    raise typer.Exit(1)


def _error(line: str) -> None:
    """One red line, never wrapped, whatever the console's width."""
    console.print(f"[red]{escape(line)}[/red]", soft_wrap=True)


publish_app = typer.Typer(help="Put files on the input topics.")
app.add_typer(publish_app, name="publish")


@publish_app.command("dicom")
def publish_dicom(files: Files, bootstrap: Bootstrap = None) -> None:
    """Publish DICOM files to dicom.instances.v1."""
    _publish("dicom", files, bootstrap)


@publish_app.command("fhir")
def publish_fhir(files: Files, bootstrap: Bootstrap = None) -> None:
    """Publish FHIR R4 JSON resources or Bundles to ehr.observations.v1."""
    _publish("fhir", files, bootstrap)


@publish_app.command("hl7")
def publish_hl7(files: Files, bootstrap: Bootstrap = None) -> None:
    """Publish HL7 v2 messages to ehr.observations.v1."""
    _publish("hl7", files, bootstrap)


@app.command()
def scenario(
    out: Annotated[Path, typer.Argument(help="Folder to write the scenario into.")],
) -> None:
    """Build the sample scenario from real radiographs and messages."""
    from cxrwatch.scenario.plan import build

    try:
        index = build(out)
    except OSError as exc:
        _fail(f"cannot write the scenario into {out}: {exc.strerror or exc}")
    console.print(f"{len(read_steps(index))} messages written; index {index}")


@app.command()
def replay(
    index: Annotated[Path, typer.Argument(exists=True, help="A scenario.json.")],
    bootstrap: Bootstrap = None,
    pace: Annotated[float, typer.Option(help="Seconds between messages.")] = 0.0,
) -> None:
    """Publish a scenario's messages in order, with a progress bar."""
    settings = _settings(bootstrap)
    try:
        replay_scenario(index, settings, pace)
    except (CxrwatchError, KafkaError, OSError) as exc:
        _fail(f"replay stopped: {exc}")


def replay_scenario(index: Path, settings: ServiceSettings, pace: float = 0.0) -> int:
    """Publish every step of ``index``; return how many were sent."""
    from cxrwatch.cli.publish import Publisher

    steps = read_steps(index)
    ensure_topics(settings)
    publisher = Publisher(settings)
    columns = (
        TextColumn("replaying"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.description}"),
    )
    try:
        with Progress(*columns, console=console) as progress:
            task = progress.add_task("", total=len(steps))
            for step in steps:
                path = index.parent / step.path
                publisher.publish(step.kind, path, key=step.key)
                progress.update(task, advance=1, description=step.kind)
                if pace:
                    time.sleep(pace)
    finally:
        publisher.close()
    return len(steps)


@app.command()
def alerts(
    api: Annotated[str, typer.Option(help="API base URL.")] = "http://127.0.0.1:8080",
    key: Annotated[str, typer.Option(envvar="CXRWATCH_API_KEY")] = "cxrwatch-local-dev",
) -> None:
    """Print the alerts the API holds."""
    from cxrwatch.embedded.stack import read_json

    try:
        body = read_json(f"{api}/alerts?limit=100", key)
    except (OSError, ValueError) as exc:
        _fail(f"the API at {api} did not answer with alerts: {exc}")
    print_alerts(body)


def since_time(text: str) -> datetime:
    """A time from ``30s``, ``10m``, ``2h``, ``1d`` ago, or an ISO 8601 time
    (local time when it has no offset)."""
    ago = re.fullmatch(r"(\d+(?:\.\d+)?)([smhd])", text.strip())
    if ago:
        unit = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}[ago[2]]
        return datetime.now(UTC) - timedelta(**{unit: float(ago[1])})
    try:
        return datetime.fromisoformat(text).astimezone(UTC)
    except ValueError as exc:
        raise typer.BadParameter(
            f"{text!r} is neither a time ago (30s, 10m, 2h, 1d) nor an ISO 8601 "
            "time (2026-01-31T14:05)"
        ) from exc


@app.command("dead-letters")
def dead_letters(
    bootstrap: Bootstrap = None,
    since: Annotated[
        datetime | None,
        typer.Option(
            parser=since_time,
            metavar="AGO|TIME",
            help="Only letters since 30s, 10m, 2h or 1d ago, or an ISO 8601 time.",
        ),
    ] = None,
    limit: Annotated[int, typer.Option(min=1, help="Print the newest N.")] = 20,
) -> None:
    """Print what the services dead-lettered and why, oldest first."""
    from cxrwatch.embedded.demo import read_dead_letters

    settings = _settings(bootstrap)
    try:
        ensure_topics(settings)
        letters = read_dead_letters(settings)
    except (CxrwatchError, KafkaError) as exc:
        _fail(f"cannot read {topics.DEADLETTER} at {settings.kafka_bootstrap}: {exc}")
    except ValidationError as exc:  # before ValueError, its base class
        _fail(
            f"{topics.DEADLETTER} holds a record that is not a dead letter: "
            f"{first_problem(exc, whole='record')}"
        )
    except ValueError as exc:
        _fail(f"{topics.DEADLETTER} holds a record that is not JSON: {exc}")
    if since is not None:
        letters = [letter for letter in letters if letter.failed_at >= since]
    print_dead_letters(letters[-limit:])
    if len(letters) > limit:
        console.print(f"the newest {limit} of {len(letters)}; --limit shows more")


@app.command()
def run(
    once: Annotated[
        bool, typer.Option(envvar="ONCE", help="Replay, print, stop.")
    ] = False,
) -> None:
    """Start broker, Redis, Triton and every service; replay the sample scenario."""
    from cxrwatch.embedded.demo import run_demo

    configure_logging("INFO")
    try:
        raise typer.Exit(run_demo(once=once))
    except CxrwatchError as exc:
        console.print(f"[red]cxrwatch: {exc}[/red]")
        raise typer.Exit(1) from exc


if __name__ == "__main__":
    app()
