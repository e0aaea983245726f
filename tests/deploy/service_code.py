"""What the services' own code says about topics and settings.

Read from the source, so the deploy tests follow the code as it changes: a
service's input topics are its processor's ``input_topics`` class attribute,
the topics it produces are the ``topic=topics.X`` arguments of its outputs.
Services whose code is not written yet are reported as such, so the tests
skip them with that reason instead of passing silently.
"""

import ast
import importlib
from pathlib import Path

from cxrwatch.core import topics
from pydantic_settings import BaseSettings

from tests.deploy.manifests import REPO

PACKAGE = REPO / "services" / "cxrwatch"

SETTINGS_CLASSES = {
    "imaging": ("cxrwatch.imaging.service", "ImagingSettings"),
    "clinical": ("cxrwatch.clinical.service", "ClinicalSettings"),
    "joiner": ("cxrwatch.joiner.service", "JoinerSettings"),
    "scorer": ("cxrwatch.scorer.service", "ScorerSettings"),
    "alerter": ("cxrwatch.alerter.service", "AlerterSettings"),
    "api": ("cxrwatch.api.settings", "ApiSettings"),
}


class NotWrittenYet(LookupError):
    """The service's code does not exist (yet)."""


def settings_class(service: str) -> type[BaseSettings]:
    """The pydantic-settings class of ``service``."""
    module_name, class_name = SETTINGS_CLASSES[service]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        raise NotWrittenYet(f"{module_name} does not exist yet") from exc
    try:
        return getattr(module, class_name)
    except AttributeError as exc:
        raise NotWrittenYet(f"{module_name}.{class_name} does not exist yet") from exc


def _topic_name(node: ast.AST) -> str | None:
    if (
        isinstance(node, ast.Attribute)
        and isinstance(node.value, ast.Name)
        and node.value.id == "topics"
    ):
        return getattr(topics, node.attr)
    return None


def _sources(service: str) -> list[Path]:
    folder = PACKAGE / service
    if not folder.exists():
        raise NotWrittenYet(f"services/cxrwatch/{service} does not exist yet")
    return sorted(folder.rglob("*.py"))


def input_topics(service: str) -> set[str]:
    """Topics the service's processor consumes."""
    found: set[str] = set()
    for source in _sources(service):
        for node in ast.walk(ast.parse(source.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Assign):
                targets = node.targets
            elif isinstance(node, ast.AnnAssign):
                targets = [node.target]
            else:
                continue
            named_input_topics = any(
                isinstance(t, ast.Name) and t.id == "input_topics" for t in targets
            )
            if named_input_topics and isinstance(node.value, ast.Tuple | ast.List):
                found |= {n for e in node.value.elts if (n := _topic_name(e))}
    if not found:
        raise NotWrittenYet(f"{service} declares no input_topics yet")
    return found


def produced_topics(service: str) -> set[str]:
    """Topics the service writes, besides the dead letters every service writes."""
    found: set[str] = set()
    for source in _sources(service):
        for node in ast.walk(ast.parse(source.read_text(encoding="utf-8"))):
            is_topic_argument = isinstance(node, ast.keyword) and node.arg == "topic"
            if is_topic_argument and (name := _topic_name(node.value)):
                found.add(name)
    return found
