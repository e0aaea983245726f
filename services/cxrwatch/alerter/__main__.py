"""Run the alerter: ``python -m cxrwatch.alerter``."""

from cxrwatch.alerter.service import AlerterSettings, build_processor
from cxrwatch.core.runner import run_stream_service


def main() -> None:
    """Start the alerter with settings from the environment."""
    settings = AlerterSettings()
    run_stream_service(build_processor, settings)


if __name__ == "__main__":
    main()
