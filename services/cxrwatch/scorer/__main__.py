"""Run the scorer: ``python -m cxrwatch.scorer``."""

from cxrwatch.core.runner import run_stream_service
from cxrwatch.scorer.service import ScorerSettings, build_processor


def main() -> None:
    """Start the scorer with settings from the environment."""
    run_stream_service(build_processor, ScorerSettings())


if __name__ == "__main__":
    main()
