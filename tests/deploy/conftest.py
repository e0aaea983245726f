"""Fixtures of the deploy tests."""

from pathlib import Path

import pytest

from tests.deploy.secrets_script import ScriptRun, run_create_secrets


@pytest.fixture(scope="session")
def generated_secrets(tmp_path_factory: pytest.TempPathFactory) -> ScriptRun:
    """The Secrets create-secrets.sh makes, as a stand-in kubectl received them."""
    workdir: Path = tmp_path_factory.mktemp("create-secrets")
    return run_create_secrets(workdir)
