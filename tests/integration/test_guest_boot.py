"""The lab works: the test guest boots under libvirt + QEMU (TCG), reports its NIC, and sees a
hot-plugged NIC come and go. Talks to libvirt directly, without the agent."""
from __future__ import annotations

import time
import uuid

import pytest

from tests.integration.guest import READY, domain_xml, guest_nets, wait_for_serial

MAC0, MAC1 = "52:54:00:5b:00:01", "52:54:00:5b:00:02"


def nic_xml(mac: str, alias: str, bridge: str) -> str:
    return (f"<interface type='bridge'><source bridge='{bridge}'/><mac address='{mac}'/>"
            f"<model type='virtio'/><alias name='{alias}'/></interface>")


@pytest.fixture
def conn(libvirt_uri):
    import libvirt

    c = libvirt.open(libvirt_uri)
    yield c
    c.close()


def test_guest_boots_and_answers_nic_hotplug(conn, guest, bridge, tmp_path):
    import libvirt

    dom_uuid = str(uuid.uuid4())
    serial = tmp_path / "serial.log"
    xml = domain_xml(f"pb-smoke-{dom_uuid[:8]}", dom_uuid, guest.kernel, guest.initrd, serial,
                     machine="pc", extra_devices=nic_xml(MAC0, "ua-smoke0", bridge))
    started = time.monotonic()
    dom = conn.createXML(xml, 0)    # transient: gone once destroyed
    try:
        _, offset = wait_for_serial(serial, READY, timeout=90)
        boot = time.monotonic() - started
        _, offset = wait_for_serial(serial, r"^PB-NETS:", timeout=10, after_offset=offset)
        assert guest_nets(serial) == {"eth0": MAC0}, f"boot took {boot:.1f} s"

        dom.attachDeviceFlags(nic_xml(MAC1, "ua-smoke1", bridge), libvirt.VIR_DOMAIN_AFFECT_LIVE)
        _, offset = wait_for_serial(serial, rf"^PB-NETS: .*{MAC1}", timeout=30, after_offset=offset)
        assert set(guest_nets(serial).values()) == {MAC0, MAC1}

        dom.detachDeviceFlags(nic_xml(MAC1, "ua-smoke1", bridge), libvirt.VIR_DOMAIN_AFFECT_LIVE)
        wait_for_serial(serial, rf"^PB-NETS: eth0={MAC0}$", timeout=30, after_offset=offset)
        assert guest_nets(serial) == {"eth0": MAC0}
        assert "ua-smoke1" not in dom.XMLDesc(0)
    finally:
        dom.destroy()
