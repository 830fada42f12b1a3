"""The agent's libvirt connection, opened again when libvirtd went away (libvirt's test driver stands for
libvirtd; closing the connection is what its restart leaves behind)."""
from __future__ import annotations

import pytest

pytest.importorskip("libvirt")

from vdsm_plugin.virt import Hypervisor  # noqa: E402


def test_a_lost_connection_is_opened_again_with_its_event_callbacks():
    hv = Hypervisor("test:///default")
    try:
        hv.subscribe(lambda *_: None, lambda *_: None, lambda *_: None)
        kept = hv.domains()[0]
        assert hv.current(kept) and hv.generation == 0
        hv._conn.close()                    # libvirtd restarted: the old connection answers nothing
        assert not hv.current(kept)         # the kept handle is stale...
        assert hv.generation == 1
        again = hv.lookup(kept.id)          # ...and a lookup works on the new connection
        assert hv.current(again) and "<domain" in again.xml()
        assert len(hv._callback_ids) == 3   # device removed, removal failed, lifecycle
    finally:
        hv.close()


def test_the_agent_looks_a_kept_domain_up_again_after_a_reconnection(tmp_path):
    from vdsm_plugin.agent import Agent
    hv = Hypervisor("test:///default")
    try:
        agent = Agent.__new__(Agent)
        agent.hv, agent.handles = hv, {}
        vm_id = hv.domains()[0].id
        first = agent.domain(vm_id)
        assert agent.domain(vm_id) is first             # kept between calls
        hv._conn.close()
        second = agent.domain(vm_id)
        assert second is not first and hv.current(second)
    finally:
        hv.close()
