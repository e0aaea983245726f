"""Run the API: ``python -m cxrwatch.api`` (CXRWATCH_API_HOST, CXRWATCH_API_PORT)."""

import logging

import uvicorn

from cxrwatch.api.app import create_app
from cxrwatch.api.settings import ApiSettings
from cxrwatch.core.logs import configure_logging

logger = logging.getLogger(__name__)


def main() -> None:
    """Serve the API with settings from the environment."""
    settings = ApiSettings()
    configure_logging(settings.log_level)
    logger.info("API listening on %s:%d", settings.api_host, settings.api_port)
    uvicorn.run(
        create_app(settings),
        host=settings.api_host,
        port=settings.api_port,
        access_log=False,
        server_header=False,
        log_config=None,
        timeout_graceful_shutdown=5,
    )


if __name__ == "__main__":
    main()
