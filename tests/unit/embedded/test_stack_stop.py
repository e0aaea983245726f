"""Stopping the stack ends each child's whole process group, including what
outlives the child itself (a Triton Python-backend stub left behind), and
the shared-memory regions such a stub could not remove."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from cxrwatch.embedded.stack import EmbeddedSettings, Stack

from tests.servers import free_port, process_stat


def _group(pgid: int) -> list[int]:
    """Running (not zombie) processes in the process group ``pgid``."""
    return [
        int(entry.name)
        for entry in Path("/proc").iterdir()
        if entry.name.isdigit()
        and (fields := process_stat(int(entry.name))) is not None
        and int(fields[2]) == pgid
        and fields[0] != "Z"
    ]


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


def test_the_python_backends_leftover_regions_go_with_triton(tmp_path: Path) -> None:
    settings = EmbeddedSettings(run_dir=tmp_path, triton_grpc_port=free_port())
    stack = Stack(settings)
    (tmp_path / "logs").mkdir()
    stack._spawn("triton", ["sleep", "300"], dict(os.environ))
    shm = Path("/dev/shm")
    left = shm / f"cxrwatch_{settings.triton_grpc_port}_cxr_fusion_0_0"
    other = shm / f"cxrwatch_{free_port()}_cxr_fusion_0_0"  # another server's
    left.write_bytes(b"\0" * 16)
    other.write_bytes(b"\0" * 16)
    try:
        stack.stop()

        assert not left.exists()
        assert other.exists()
    finally:
        left.unlink(missing_ok=True)
        other.unlink(missing_ok=True)


def test_a_child_the_stack_never_recorded_is_stopped_by_cxrwatch_run() -> None:
    # In a process of its own: in pytest's, every child would be stopped.
    script = (
        "import subprocess, sys\n"
        "from cxrwatch.embedded.demo import stop_unrecorded_children\n"
        "child = subprocess.Popen(['sleep', '300'], start_new_session=True)\n"
        "stop_unrecorded_children()\n"
        "sys.exit(-child.wait(timeout=10))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == signal.SIGTERM, result.stderr
