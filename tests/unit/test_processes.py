"""``--processes N``: the arguments, and the one heartbeat over N children's."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from cli.main import main
from cli.processes import child_heartbeat, heartbeat_of_all


@pytest.mark.parametrize("command", ["api", "worker"])
def test_fewer_than_one_process_is_refused(
    command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_:
        main([command, "--processes", "0"])

    assert exit_.value.code == 2
    assert "must be at least 1" in capsys.readouterr().err


def test_the_heartbeat_is_as_old_as_the_stalest_child_and_waits_for_all(tmp_path: Path) -> None:
    heartbeat = tmp_path / "worker.heartbeat"
    children = [child_heartbeat(heartbeat, index) for index in range(3)]
    assert [child.name for child in children] == [f"worker.heartbeat.{i}" for i in range(3)]
    touch = heartbeat_of_all(heartbeat, 3)

    for child, moment in zip(children[:2], (1_000.0, 2_000.0), strict=True):
        child.touch()
        os.utime(child, (moment, moment))
    touch()
    assert not heartbeat.exists(), "a child that never swept is not healthy"

    children[2].touch()
    os.utime(children[2], (3_000.0, 3_000.0))
    touch()
    assert heartbeat.stat().st_mtime == 1_000.0

    os.utime(children[0], (4_000.0, 4_000.0))
    touch()
    assert heartbeat.stat().st_mtime == 2_000.0
