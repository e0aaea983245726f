"""JSON Schemas of the topic messages, generated from the event models.

``python -m cxrwatch.core.schemas schemas`` rewrites ``schemas/<topic>.json``;
a test fails when the committed files and the models disagree.
"""

import json
import sys
from pathlib import Path
from typing import Any

from cxrwatch.core.events import EVENT_MODELS

SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"


def schema_for(topic: str) -> dict[str, Any]:
    """The JSON Schema of the messages on ``topic``."""
    model = EVENT_MODELS[topic]
    schema = model.model_json_schema(mode="serialization")
    return {
        "$schema": SCHEMA_DIALECT,
        "$id": f"https://cxrwatch.org/schemas/{topic}.json",
        **schema,
    }


def render(topic: str) -> str:
    """The schema as it is committed: sorted keys, two-space indent."""
    return json.dumps(schema_for(topic), indent=2, sort_keys=True) + "\n"


def write_all(folder: Path) -> list[Path]:
    """Write every topic's schema into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for topic in EVENT_MODELS:
        path = folder / f"{topic}.json"
        path.write_text(render(topic), encoding="utf-8")
        written.append(path)
    return written


if __name__ == "__main__":
    for path in write_all(Path(sys.argv[1] if len(sys.argv) > 1 else "schemas")):
        sys.stdout.write(f"{path}\n")
