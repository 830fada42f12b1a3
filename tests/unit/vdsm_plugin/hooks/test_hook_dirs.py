"""The hooks directory and every directory on the way to a script, symlinks resolved, must be owned
by root or the agent's user and not writable by group or others. The measured attack: with a
world-writable hooks_dir, user nobody pointed a hook point (a symlink) at a root-owned directory of
scripts, and the agent ran them as root."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.unit.vdsm_plugin.hooks.scripts import write_hook
from vdsm_plugin.errors import AgentError
from vdsm_plugin.hooks import HookRunner

POINT = "before_vm_start"
XML = "<domain><a/></domain>"


@pytest.fixture
def root_scripts(tmp_path: Path) -> Path:
    """A directory of scripts somewhere on the host, trusted in itself, that leaves a trace when run."""
    d = tmp_path / "elsewhere"
    write_hook(d, POINT, "10_trace", f'touch "{tmp_path / "ran"}"\n')
    return d / POINT


def test_symlinked_point_in_a_world_writable_hooks_dir_is_refused(tmp_path, root_scripts):
    hooks = tmp_path / "hooks"
    hooks.mkdir()
    os.chmod(hooks, 0o777)
    os.symlink(root_scripts, hooks / POINT)        # what `nobody` could do
    with pytest.raises(AgentError) as e:
        HookRunner(hooks, timeout=5).run(POINT, XML)
    assert e.value.name == "hookFailed" and e.value.data["path"] == str(hooks)
    assert not (tmp_path / "ran").exists()


def test_a_world_writable_directory_above_the_hooks_dir_is_refused(tmp_path, root_scripts):
    above = tmp_path / "above"
    above.mkdir()
    os.chmod(above, 0o777)
    hooks = above / "hooks"
    hooks.mkdir(mode=0o755)
    write_hook(hooks, POINT, "10_trace", f'touch "{tmp_path / "ran"}"\n')
    with pytest.raises(AgentError) as e:
        HookRunner(hooks, timeout=5).run(POINT, XML)
    assert e.value.data["path"] == str(above)
    assert not (tmp_path / "ran").exists()


def test_a_symlink_is_checked_where_it_leads(tmp_path):
    """A hook point linked into a world-writable directory: the target's chain is what counts."""
    hooks = tmp_path / "hooks"
    hooks.mkdir(mode=0o755)
    target = tmp_path / "open"
    write_hook(target, POINT, "10_trace", f'touch "{tmp_path / "ran"}"\n')
    os.chmod(target, 0o777)
    os.symlink(target / POINT, hooks / POINT)
    with pytest.raises(AgentError) as e:
        HookRunner(hooks, timeout=5).run(POINT, XML)
    assert e.value.data["path"] == str(target)
    assert not (tmp_path / "ran").exists()


def test_a_symlinked_hooks_dir_is_resolved_first(tmp_path):
    real = tmp_path / "real"
    write_hook(real, POINT, "10_trace", f'touch "{tmp_path / "ran"}"\n')
    os.chmod(real, 0o777)
    link = tmp_path / "hooks"
    os.symlink(real, link)
    with pytest.raises(AgentError):
        HookRunner(link, timeout=5).run(POINT, XML)
    assert not (tmp_path / "ran").exists()


@pytest.mark.skipif(os.geteuid() != 0, reason="chown to another user needs root")
def test_a_directory_owned_by_another_user_on_the_way_is_refused(tmp_path, root_scripts):
    hooks = tmp_path / "hooks"
    hooks.mkdir(mode=0o755)
    os.chown(hooks, 65534, 65534)
    os.symlink(root_scripts, hooks / POINT)
    with pytest.raises(AgentError) as e:
        HookRunner(hooks, timeout=5).run(POINT, XML)
    assert "owned by uid 65534" in e.value.detail
    assert not (tmp_path / "ran").exists()


def test_a_safe_symlink_is_followed(tmp_path, root_scripts):
    hooks = tmp_path / "hooks"
    hooks.mkdir(mode=0o755)
    os.symlink(root_scripts, hooks / POINT)
    assert HookRunner(hooks, timeout=5).run(POINT, XML).ran == ["10_trace"]
    assert (tmp_path / "ran").exists()


def test_sticky_world_writable_directories_like_tmp_pass(tmp_path):
    sticky = tmp_path / "sticky"
    sticky.mkdir()
    os.chmod(sticky, 0o1777)
    hooks = sticky / "hooks"
    hooks.mkdir(mode=0o755)
    write_hook(hooks, POINT, "10_ok", "exit 0\n")
    assert HookRunner(hooks, timeout=5).run(POINT, XML).ran == ["10_ok"]
