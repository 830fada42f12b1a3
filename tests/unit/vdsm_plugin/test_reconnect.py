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


NODE = """<node><cpu><mhz>1000</mhz><model>i686</model><active>1</active><nodes>1</nodes><sockets>1</sockets>
<cores>1</cores><threads>1</threads></cpu><memory>1048576</memory></node>"""


def _wait_for(predicate, timeout=5.0):
    import time
    end = time.monotonic() + timeout
    while time.monotonic() < end and not predicate():
        time.sleep(0.02)
    return predicate()


def test_a_second_connection_opened_again_leaves_the_first_ones_callbacks_single(tmp_path):
    """With host devices read from another libvirt (nodedev_uri), opening that connection again
    registers its own callback alone: every domain event is still delivered once, not twice."""
    import time
    node = tmp_path / "node.xml"
    node.write_text(NODE)
    hv = Hypervisor("test:///default", nodedev_uri=f"test://{node}")
    seen: list[str] = []
    try:
        hv.subscribe(lambda *_: None, lambda *_: None, lambda vm, ev: seen.append(ev), lambda *_: None)
        old = hv._nodedev_conn
        old.close()                         # the device-side libvirtd restarted
        hv.nodedev_names(["usb_device"])    # a call that finds it gone opens it again
        assert hv._nodedev_conn is not old and len(hv._callback_ids) == 3
        dom = hv._conn.lookupByName("test")
        dom.suspend()
        assert _wait_for(lambda: seen)
        time.sleep(0.3)                     # a second delivery would land by now
        dom.resume()
        assert _wait_for(lambda: len(seen) >= 2)
        time.sleep(0.3)
        assert seen == ["suspended", "resumed"], seen
    finally:
        hv.close()
