"""The agent's identity (Host.getCapabilities hostId): made once, kept in its state directory."""
from __future__ import annotations

import uuid

import pytest

from vdsm_plugin.agent import host_id


def test_the_identity_is_made_at_the_first_start_and_kept(tmp_path):
    path = tmp_path / "host-id"
    first = host_id(path)
    assert str(uuid.UUID(first)) == first
    assert path.read_text() == first + "\n"
    assert host_id(path) == first
    assert sorted(p.name for p in tmp_path.iterdir()) == ["host-id"]     # no partial file left


def test_another_state_directory_is_another_agent(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    assert host_id(tmp_path / "a" / "host-id") != host_id(tmp_path / "b" / "host-id")


def test_a_file_that_holds_no_identity_stops_the_start(tmp_path):
    path = tmp_path / "host-id"
    path.write_text("not-a-uuid\n")
    with pytest.raises(ValueError, match="does not hold this agent's identity"):
        host_id(path)
    assert path.read_text() == "not-a-uuid\n"
