"""Stopping the stack ends each child's whole process group, including what
outlives the child itself (a Triton Python-backend stub left behind)."""

import os
import time
from pathlib import Path

from cxrwatch.embedded.stack import EmbeddedSettings, Stack


def _group(pgid: int) -> list[int]:
    """Live (not zombie) processes in the process group ``pgid``."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            members.append(int(entry.name))
    return members


def test_a_straggler_that_ignores_sigterm_is_stopped_with_its_group(
    tmp_path: Path,
) -> None:
    stack = Stack(EmbeddedSettings(run_dir=tmp_path))
    (tmp_path / "logs").mkdir()
    # The leader ends on SIGTERM; the process it started ignores SIGTERM.
    child = stack._spawn(
        "straggler",
        ["bash", "-c", "(trap '' TERM; exec sleep 300) & exec sleep 300"],
        dict(os.environ),
    )
    deadline = time.monotonic() + 10
    while len(_group(child.process.pid)) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(_group(child.process.pid)) == 2

    stack.stop()

    deadline = time.monotonic() + 5
    while _group(child.process.pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _group(child.process.pid) == []
