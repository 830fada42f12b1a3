"""USB devices plugged and pulled on L1 from the outside, as a person does with a stick: the agent's
journal reports them, also when the device was attached to a VM."""
from __future__ import annotations

import json
import time

from tests.testhost.conftest import CCID, journal_last, record, the_device, wait_event, wait_until
from tests.testhost.test_usb_passthrough import attach, detach

EVENT_TIMEOUT = 15      # "within seconds": udev in L1, libvirt's node-device event, the journal


def _hostdev_event(kind: str):
    return lambda e: e["kind"] == kind and str(e["data"].get("name", "")).startswith("usb_")


def test_plug_and_pull_reported_in_the_journal(testhost, agent):
    after = journal_last(agent)
    start = time.monotonic()
    testhost.plug_usb("ext-plug", "usb-ccid", port=6)
    added = wait_event(agent, after, _hostdev_event("hostdev_added"), EVENT_TIMEOUT, "hostdev_added")
    plugged_in = time.monotonic() - start
    dev = the_device(agent, CCID)
    assert added["data"]["name"] == dev["name"]

    start = time.monotonic()
    testhost.pull_usb("ext-plug")
    removed = wait_event(agent, added["seq"], _hostdev_event("hostdev_removed"), EVENT_TIMEOUT, "hostdev_removed")
    pulled_in = time.monotonic() - start
    assert removed["data"]["name"] == dev["name"]
    wait_until(lambda: not [d for d in agent.call("Host.hostdevListByCaps", {"caps": ["usb_device"]})["devices"]
                            if d["name"] == dev["name"]], 5, f"{dev['name']} gone from the inventory")
    record("usb-plug-pull-journal.txt", f"{json.dumps(added)}\n{json.dumps(removed)}\n"
                                        f"# reported {plugged_in:.2f} s after device_add, {pulled_in:.2f} s after "
                                        f"device_del\n")


def test_pulled_while_attached(testhost, agent, l1, l2):
    after = journal_last(agent)
    testhost.plug_usb("ext-attached", "usb-ccid", port=7)
    try:
        wait_event(agent, after, _hostdev_event("hostdev_added"), EVENT_TIMEOUT, "hostdev_added")
        dev = the_device(agent, CCID)
        alias = attach(agent, l2.id, {"vendor": CCID[0], "product": CCID[1]})["alias"]
        after = journal_last(agent)
    finally:
        testhost.pull_usb("ext-attached")
    removed = wait_event(agent, after, _hostdev_event("hostdev_removed"), EVENT_TIMEOUT, "hostdev_removed")
    assert removed["data"]["name"] == dev["name"]
    # libvirt keeps the vanished device in the live XML; the explicit unplug still completes.
    assert f"<alias name='{alias}'/>" in l1.hostdev_xml(l2.id)
    assert detach(agent, l2.id, alias)["status"] == "removed"
    assert alias not in l1.hostdev_xml(l2.id)
