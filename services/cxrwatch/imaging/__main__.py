"""Run the imaging service: ``python -m cxrwatch.imaging``."""

from cxrwatch.core.runner import run_stream_service
from cxrwatch.imaging.service import ImagingProcessor, ImagingSettings


def main() -> None:
    """Read settings from the environment, create topics, run the service."""
    run_stream_service(ImagingProcessor, ImagingSettings())


if __name__ == "__main__":
    main()
