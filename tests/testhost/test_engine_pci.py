"""Seed 003's flow on the test host, through the engine: PCI alias a1 names L1's e1000e; a flavor asks
for it (`nova flavor-key ... set "pci_passthrough:alias"="a1:1"` through python-novaclient); a VM of the
flavor boots with the NIC passed through (on its guest's PCI bus); the attachment is deleted through the
facade (v2: 200) and L1 has the NIC back; it is hot-plugged again through os-pci_attachments (v3), the
guest sees it, and deleting it (v3: 202) gives it back to L1 once more.

The VM boots the tiny guest (TCG inside TCG: minutes), which answers ACPI hot-unplug and prints the NICs
its kernel finds on its serial console."""
from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from keystoneauth1 import session as ks_session
from keystoneauth1 import token_endpoint
from novaclient import client as nova_client
from werkzeug.serving import make_server

from tests.integration.guest import wait_for_serial
from tests.testhost.conftest import E1000E, IMAGES, L1_RUN, L2_BOOT_TIMEOUT, record, wait_until
from tests.testhost.engine import Engine, ok, running_engine

ALIAS = "a1"
GUEST_SEES_E1000E = r"e1000e [0-9a-f:.]+ eth[0-9]+: "
GIVEN_BACK = 60         # the guest's ACPI eject, DEVICE_REMOVED, libvirt rebinding e1000e in L1
# The first test that needs the guest waits for its boot, which has its own deadline.
BOOTING = pytest.mark.timeout(L2_BOOT_TIMEOUT + 240)
ATTACHMENT_KEYS = {"attachment_id", "serverId", "dev_id", "address", "inner_address", "vendor_id", "product_id"}


class PciEngine(Engine):
    def nic(self) -> dict[str, Any]:
        (found,) = [d for d in self.devices("pci") if (d["vendor_id"], d["product_id"]) == E1000E]
        return found

    def facade(self, method: str, path: str, **kw: Any):
        return getattr(self.api, method)(path, headers={"X-Auth-Token": self.token}, **kw)


@pytest.fixture(scope="session")
def engine(testhost, agent, tmp_path_factory) -> Iterator[PciEngine]:
    """Session-wide: its VM boots while the other modules run (see engine_vm_booted)."""
    from engine.pci_aliases import Alias
    with running_engine(testhost, agent, tmp_path_factory.mktemp("engine-pci"), PciEngine,
                        pci_aliases=[Alias(ALIAS, *E1000E)]) as it:
        yield it
    record("engine-pci-timings.txt", "\n".join(it.timings) + "\n")
    print("\ntesthost, engine PCI flows:\n  " + "\n  ".join(it.timings))


@pytest.fixture(scope="session")
def nova(engine) -> Iterator[Any]:
    """python-novaclient on the engine served over HTTP (the facade), with the admin's token."""
    server = make_server("127.0.0.1", 0, engine.app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, name="nova-facade", daemon=True)
    thread.start()
    auth = token_endpoint.Token(f"http://127.0.0.1:{server.server_port}/v2.1/default", engine.token)
    yield nova_client.Client("2.1", session=ks_session.Session(auth=auth))
    server.shutdown()
    thread.join(10)


@pytest.fixture(scope="session")
def flavor(nova) -> Any:
    """Seed 003's steps 2 and 3: `nova flavor-key gzm set "pci_passthrough:alias"="a1:1"`."""
    made = nova.flavors.create("gzm", ram=256, vcpus=1, disk=0)
    made.set_keys({"pci_passthrough:alias": f"{ALIAS}:1"})
    return made


@pytest.fixture(scope="session")
def engine_vm(engine, testhost, flavor) -> dict[str, Any]:
    """A VM of the flavor, started: the e1000e goes in at VM.create; its guest boots in the background."""
    name = "eng-pci"
    vm = engine.new_vm(name, memory_mb=256, flavor_id=flavor.id, boot={
        "kernel": f"{IMAGES}/vmlinux", "initrd": f"{IMAGES}/l2-initrd.gz",
        "cmdline": "console=ttyS0 quiet panic=-1 rdinit=/init", "serialLog": f"{L1_RUN}/vms/{name}.log"})
    start = time.monotonic()
    ok(engine.api.post(f"/api/vms/{vm['id']}/start", json={}))
    engine.timed("start with the flavor's PCI device", start)
    return {**vm, "serial": testhost.share / "vms" / f"{name}.log", "started": start}


@pytest.fixture(scope="session")
def engine_vm_booted(engine, engine_vm) -> dict[str, Any]:
    """The VM's guest up: a PCI device is unplugged only from a guest that answers ACPI."""
    wait_for_serial(engine_vm["serial"], "PLUGBOARD-L2-READY", timeout=L2_BOOT_TIMEOUT)
    engine.timed("start -> its guest ready", engine_vm["started"])
    return engine_vm


def test_the_alias_and_the_flavor_as_seed_003_shows_them(engine, nova, flavor):
    nic = engine.nic()
    assert (nic["status"], nic["vm_id"], nic["iommu_group"] is not None) == ("available", None, True)
    assert ok(engine.api.get("/api/pci_aliases")) == [{"name": ALIAS, "vendor_id": E1000E[0],
                                                       "product_id": E1000E[1]}]
    shown = nova.flavors.get(flavor.id)
    assert (shown.name, shown.get_keys()) == ("gzm", {"pci_passthrough:alias": f"{ALIAS}:1"})


def test_a_vm_of_the_flavor_starts_with_the_nic_allocated_to_it(engine, l1, engine_vm):
    nic = engine.nic()
    assert (nic["status"], nic["vm_id"]) == ("allocated", engine_vm["id"])
    assert l1.pci_driver(nic["pci_address"]) == "vfio-pci"
    xml = l1.hostdev_xml(engine_vm["id"])
    # On the guest's PCI bus from its first instruction (its kernel loads e1000e before it turns its
    # console's log level up, so the boot-time probe is not printed; the hot-plug below is).
    assert "<driver name='vfio'/>" in xml and "<address type='pci'" in xml
    record("engine-pci-boot.xml", xml)


@BOOTING
def test_deleted_through_the_facade_v2_and_back_in_l1(engine, l1, engine_vm_booted):
    vm = engine_vm_booted
    address = engine.nic()["pci_address"]
    listed = ok(engine.facade("get", f"/v2/default/servers/{vm['id']}/os-pci_attachments"))["pciAttachment"]
    assert len(listed) == 1 and set(listed[0]) == ATTACHMENT_KEYS
    att = listed[0]
    assert (att["serverId"], att["address"], att["vendor_id"], att["product_id"]) == (vm["id"], address, *E1000E)
    assert att["dev_id"] == engine.nic()["name"] and att["inner_address"]
    start = time.monotonic()
    resp = engine.facade("delete", f"/v2/default/servers/{vm['id']}/os-pci_attachments/{att['attachment_id']}")
    assert resp.status_code == 200, resp.get_json()
    wait_until(lambda: l1.pci_driver(address) == "e1000e", GIVEN_BACK, "e1000e bound again in L1")
    engine.timed("v2 delete -> e1000e back in L1", start)
    wait_until(lambda: engine.nic()["status"] == "available", 30, "the NIC available in the inventory")
    assert ok(engine.facade("get", f"/v2/default/servers/{vm['id']}/os-pci_attachments")) == {"pciAttachment": []}


@BOOTING
def test_hot_plugged_through_the_facade_v3_the_guest_sees_it_and_v3_delete(engine, l1, engine_vm_booted):
    vm, mark = engine_vm_booted, engine_vm_booted["serial"].stat().st_size
    address = engine.nic()["pci_address"]
    start = time.monotonic()
    resp = engine.facade("post", f"/v3/servers/{vm['id']}/os-pci_attachments",
                         json={"pciAttachment": {"pci_passthrough:alias": f"{ALIAS}:1"}})
    assert resp.status_code in (200, 202), resp.get_json()
    (att,) = resp.get_json()["pci_devices"]
    engine.timed("v3 hot-plug", start)
    assert set(att) == ATTACHMENT_KEYS and att["address"] == address and att["inner_address"]
    record("engine-pci-hotplug.xml", l1.hostdev_xml(vm["id"]))
    assert l1.pci_driver(address) == "vfio-pci"
    wait_for_serial(vm["serial"], GUEST_SEES_E1000E, timeout=90, after_offset=mark)
    engine.timed("hot-plug -> the guest's e1000e driver has it", start)

    start = time.monotonic()
    resp = engine.facade("delete", f"/v3/servers/{vm['id']}/os-pci_attachments/{att['attachment_id']}")
    assert resp.status_code == 202, resp.get_json()
    wait_until(lambda: l1.pci_driver(address) == "e1000e", GIVEN_BACK, "e1000e bound again in L1")
    engine.timed("v3 delete -> e1000e back in L1", start)
    wait_until(lambda: engine.nic()["status"] == "available", 30, "the NIC available in the inventory")
    ok(engine.api.post(f"/api/vms/{vm['id']}/stop", json={}))
