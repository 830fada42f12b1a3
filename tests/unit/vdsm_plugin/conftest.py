from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from tests.unit.vdsm_plugin.fakes import FakeHypervisor


@pytest.fixture
def fake_agent(tmp_path: Path):
    """An Agent wired exactly as in production, over a fake hypervisor."""
    from vdsm_plugin import config
    from vdsm_plugin.agent import Agent, VmLocks
    from vdsm_plugin.hooks import HookRunner
    from vdsm_plugin.journal import Journal
    from vdsm_plugin.removals import Removals
    from vdsm_plugin.whitelist import Whitelist

    hooks = tmp_path / "hooks"
    hooks.mkdir()
    cfg = config.load(None, state_dir=str(tmp_path / "state"), hooks_dir=str(hooks))
    cfg = config.AgentConfig(**{**cfg.__dict__, "unplug_timeout": 0.5})
    journal = Journal(tmp_path / "events.db")
    hv = FakeHypervisor()
    agent = Agent(config=cfg, hv=hv, journal=journal, hooks=HookRunner(hooks, timeout=5),
                  whitelist=Whitelist(), removals=Removals(journal), locks=VmLocks(5.0),
                  host_id=str(uuid.uuid4()))
    hv.subscribe(agent.removals.on_removed, agent.removals.on_removal_failed, agent._on_lifecycle)
    return agent


@pytest.fixture
def vm_id(fake_agent) -> str:
    vid = str(uuid.uuid4())
    fake_agent.hv.add_vm(vid)
    return vid
