"""``make run``: the whole pipeline on the sample scenario, then the API stays up."""

import logging
import time

from rich.console import Console

from cxrwatch.core.settings import ServiceSettings
from cxrwatch.embedded.lag import wait_until_drained
from cxrwatch.embedded.stack import EmbeddedSettings, Stack, read_json

logger = logging.getLogger(__name__)
console = Console()


def run_demo(*, once: bool) -> int:
    """Run the scenario; with ``once``, stop everything and return the exit code."""
    from cxrwatch.cli.main import print_alerts, replay_scenario
    from cxrwatch.scenario.plan import build

    settings = EmbeddedSettings()
    stack = Stack(settings)
    try:
        console.print("starting broker, Redis, Triton and the services…")
        stack.start()
        index = build(settings.run_dir / "scenario")
        sent = replay_scenario(index, ServiceSettings(kafka_bootstrap=stack.bootstrap))
        console.print(f"replayed {sent} messages; waiting for the pipeline to drain…")
        lag = wait_until_drained(stack.bootstrap, timeout_s=300)
        stack.check_alive()
        body = read_json(f"{stack.api_url}/alerts?limit=100", settings.api_key)
        print_alerts(body)
        if any(lag.values()):
            console.print(f"[red]pipeline did not drain: {lag}[/red]")
            return 1
        if once:
            return 0
        console.print(
            f"API and alert board on {stack.api_url}/ (key {settings.api_key}); "
            "Ctrl-C stops everything"
        )
        while True:
            stack.check_alive()
            time.sleep(1)
    except KeyboardInterrupt:
        return 0
    finally:
        console.print("stopping…")
        stack.stop()
