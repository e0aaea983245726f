"""``cxrwatch replay`` and ``scenario`` refuse what they cannot use in one line,
before any broker is asked (the bootstrap address here answers nothing)."""

import json
from pathlib import Path

import pytest
from cxrwatch.cli.main import app
from typer.testing import CliRunner

NOWHERE = "127.0.0.1:1"


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("<steps/>", "Invalid JSON: expected value at line 1 column 1"),
        (json.dumps({"anchor": "2026-01-01"}), "steps: Field required"),
        (
            json.dumps({"steps": [{"kind": "xml", "path": "a.xml", "key": "K"}]}),
            "steps.0.kind: Input should be 'dicom', 'fhir' or 'hl7'",
        ),
        (
            json.dumps({"steps": [{"kind": "hl7", "path": "a.hl7"}]}),
            "steps.0.key: Field required",
        ),
        (
            json.dumps({"steps": [{"kind": "fhir", "path": "../x.json", "key": "K"}]}),
            "steps.0.path '../x.json' leads out of the index's folder",
        ),
        (
            json.dumps(
                {"steps": [{"kind": "fhir", "path": "/etc/passwd", "key": "K"}]}
            ),
            "steps.0.path '/etc/passwd' leads out of the index's folder",
        ),
    ],
    ids=["not-json", "no-steps", "unknown-kind", "no-key", "outside", "absolute"],
)
def test_a_bad_index_is_one_line(text: str, reason: str, tmp_path: Path) -> None:
    index = tmp_path / "scenario.json"
    index.write_text(text)

    result = CliRunner().invoke(app, ["replay", str(index), "--bootstrap", NOWHERE])

    assert result.exit_code == 1
    assert result.output.splitlines() == [
        f"cxrwatch: replay stopped: {index} is not a scenario index: {reason}"
    ]


def test_a_scenario_folder_that_cannot_be_made_is_one_line(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")

    result = CliRunner().invoke(app, ["scenario", str(blocker / "out")])

    assert result.exit_code == 1
    assert result.output.splitlines() == [
        f"cxrwatch: cannot write the scenario into {blocker / 'out'}: Not a directory"
    ]
