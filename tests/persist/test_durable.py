"""persist.durable: a durable write replaces the file whole and leaves no temporary behind."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from persist import durable


def test_write_creates_and_replaces(tmp_path: Path) -> None:
    target = tmp_path / "f.bin"
    durable.write_durably(target, b"one")
    durable.write_durably(target, b"two", sync_dir=False)
    assert target.read_bytes() == b"two"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.bin"]


def test_a_failed_write_leaves_no_temporary_and_the_old_file(tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "f.bin"
    durable.write_durably(target, b"old")

    def failing_fsync(fd: int) -> None:
        raise OSError("disk gone")

    monkeypatch.setattr(os, "fsync", failing_fsync)
    with pytest.raises(OSError, match="disk gone"):
        durable.write_durably(target, b"new")
    monkeypatch.undo()
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.bin"]


def test_a_failed_rename_leaves_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "taken"
    target.mkdir()  # a folder cannot be replaced by a file
    (target / "inside").write_bytes(b"x")
    with pytest.raises(OSError):
        durable.write_durably(target, b"data")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken"]
    assert not any(p.name.endswith(durable.TEMP_SUFFIX) for p in tmp_path.iterdir())
