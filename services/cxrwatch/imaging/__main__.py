"""Run the imaging service: ``python -m cxrwatch.imaging``."""

from cxrwatch.core.runner import run_stream_service
from cxrwatch.imaging.service import ImagingProcessor, ImagingSettings


def main() -> None:
    """Read settings from the environment and consume until SIGTERM."""
    settings = ImagingSettings()
    run_stream_service(ImagingProcessor(settings), settings)


if __name__ == "__main__":
    main()
