"""Run the joiner: ``python -m cxrwatch.joiner``."""

from cxrwatch.core.runner import run_stream_service
from cxrwatch.joiner.service import JoinerSettings, build_processor


def main() -> None:
    """Start the joiner with settings from the environment."""
    settings = JoinerSettings()
    run_stream_service(build_processor, settings)


if __name__ == "__main__":
    main()
