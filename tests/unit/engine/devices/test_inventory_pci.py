"""A sync of a host's inventory leaves the IOMMU groups as its claims make them: a free function whose
group has a held sibling stays unavailable after the host's list is read again."""
from __future__ import annotations

from typing import Any

from engine.dao import host_devices
from engine.devices import inventory
from engine.vocab import ALLOCATED, AVAILABLE, UNAVAILABLE
from tests.unit.engine.fakehost import FakeHost, FakeHosts


def _fn(function: int, *, group: int = 7, driver: str = "e1000e") -> dict[str, Any]:
    return {"name": f"pci_0000_02_00_{function}", "capability": "pci", "vendorId": "8086", "productId": "10c9",
            "pciAddress": f"0000:02:00.{function}", "iommuGroup": group, "driver": driver, "allowed": True}


def _status(sessions, host, name: str) -> str:
    with sessions() as s:
        return host_devices.get_by_name(s, host.id, name).status


def test_a_resync_keeps_the_sibling_of_a_held_function_unavailable(sessions, make_host, make_vm):
    agent = FakeHost("h1")
    host = make_host("h1")
    vm = make_vm("v1")
    agent.hostdevs[:] = [_fn(0), _fn(1)]
    inventory.refresh(sessions, FakeHosts(agent), host)
    with sessions.begin() as s:
        held = host_devices.get_by_name(s, host.id, "pci_0000_02_00_0")
        assert host_devices.claim(s, held.id, vm.id) and host_devices.allocate(s, held.id, vm.id)
    agent.hostdevs[:] = [_fn(0, driver="vfio-pci"), _fn(1)]     # the host moved the held one to VFIO
    inventory.refresh(sessions, FakeHosts(agent), host)
    assert _status(sessions, host, "pci_0000_02_00_0") == ALLOCATED
    assert _status(sessions, host, "pci_0000_02_00_1") == UNAVAILABLE
    inventory.refresh(sessions, FakeHosts(agent), host)          # nothing new on the host
    assert _status(sessions, host, "pci_0000_02_00_1") == UNAVAILABLE

    with sessions.begin() as s:
        assert host_devices.release(s, host_devices.get_by_name(s, host.id, "pci_0000_02_00_0").id, vm.id)
    agent.hostdevs[:] = [_fn(0), _fn(1)]
    inventory.refresh(sessions, FakeHosts(agent), host)
    assert [_status(sessions, host, f"pci_0000_02_00_{f}") for f in (0, 1)] == [AVAILABLE, AVAILABLE]
