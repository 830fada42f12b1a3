"""A fake hypervisor for the unit tier: one in-memory domain per VM that can fire, delay, drop or fail
the removal events, orders the real hypervisor cannot produce on demand."""
from __future__ import annotations

import queue
import threading
import time
from typing import Callable

from lxml import etree

from vdsm_plugin.virt import ERR_NO_DOMAIN, Hypervisor, LibvirtFailure

DOMAIN = """<domain type='qemu'><name>{name}</name><uuid>{uuid}</uuid>{metadata}<memory unit='KiB'>262144</memory>
<vcpu>1</vcpu><os><type arch='x86_64' machine='pc'>hvm</type></os><devices>
<controller type='usb' index='0' model='piix3-uhci'><alias name='usb'/></controller>
<controller type='pci' index='0' model='pci-root'><alias name='pci.0'/></controller>
</devices></domain>"""
# The agent's mark (vdsm_plugin.domxml.metadata): a domain without it is not Plugboard's.
MARK = "<metadata><pb:vm xmlns:pb='https://plugboard.dev/xmlns/vm/1'/></metadata>"


class FakeDomain:
    """What Hypervisor.lookup returns: calls go to the fake hypervisor, by uuid."""

    def __init__(self, hv: "FakeHypervisor", vm_id: str) -> None:
        self._hv, self.id = hv, vm_id

    def xml(self, *, inactive: bool = False) -> str:
        return self._hv.xml(self.id, inactive=inactive)

    def state(self) -> str:
        return self._hv.state(self.id)

    def is_persistent(self) -> bool:
        return self._hv.is_persistent(self.id)

    def start(self) -> None:
        self._hv.start(self.id)

    def destroy(self, *, undefine: bool) -> None:
        self._hv.destroy(self.id, undefine=undefine)

    def attach(self, device_xml: str, flags: int) -> None:
        self._hv.attach(self.id, device_xml, flags)

    def detach(self, device_xml: str, flags: int) -> None:
        self._hv.detach(self.id, device_xml, flags)

    def update_device(self, device_xml: str, flags: int) -> None:
        self._hv.update_device(self.id, device_xml, flags)


class FakeHypervisor:
    AFFECT_LIVE = Hypervisor.AFFECT_LIVE
    AFFECT_CONFIG = Hypervisor.AFFECT_CONFIG

    def __init__(self) -> None:
        self.doms: dict[str, etree._Element] = {}
        self.running: dict[str, bool] = {}
        self.removal = "event"   # event | late | none | failed | refuse
        self.late_after = 0.2
        self.attach_error: LibvirtFailure | None = None
        self.start_error: LibvirtFailure | None = None
        self.calls: list[tuple[str, str]] = []
        self.nodedevs: list[str] = []
        self.nodedev_kinds: dict[str, list[str]] = {}   # node-device name -> its capabilities
        self.nodedev_lookups = 0                        # node devices looked up by name
        self._slot = 3
        self.on_removed: Callable[[str, str], None] = lambda *_: None
        self.on_removal_failed: Callable[[str, str], None] = lambda *_: None
        self.on_lifecycle: Callable[[str, str], None] = lambda *_: None
        # libvirt delivers lifecycle events from its event thread, after the call that caused them
        # may have returned: the fake does the same, this many seconds later.
        self.event_delay = 0.05
        # When set, start() waits for it: a create that is still in progress.
        self.start_gate: threading.Event | None = None
        self.start_entered = threading.Event()
        self._events: queue.Queue | None = None
        self.lookups = 0          # Hypervisor.lookup calls: one per verb call
        self.xml_reads = 0        # domain XML fetches

    # wiring done by Agent.start in real life
    def subscribe(self, on_removed, on_removal_failed, on_lifecycle, on_nodedev=None) -> None:
        self.on_removed, self.on_removal_failed = on_removed, on_removal_failed
        self.on_lifecycle = on_lifecycle

    def _lifecycle(self, vm_id: str, event: str) -> None:
        """Deliver a lifecycle event `event_delay` seconds from now, in order, from one thread."""
        if self._events is None:
            self._events = queue.Queue()
            threading.Thread(target=self._deliver, name="fake-libvirt-events", daemon=True).start()
        self._events.put((time.monotonic() + self.event_delay, vm_id, event))

    def _deliver(self) -> None:
        while True:
            due, vm_id, event = self._events.get()
            time.sleep(max(0.0, due - time.monotonic()))
            self.on_lifecycle(vm_id, event)

    def add_vm(self, vm_id: str, name: str = "vm", running: bool = True, *, marked: bool = True) -> None:
        """A domain; `marked=False`: one Plugboard did not define (another tool's, the host's)."""
        self.doms[vm_id] = etree.fromstring(DOMAIN.format(name=name, uuid=vm_id, metadata=MARK if marked else ""))
        self.running[vm_id] = running

    def current(self, domain: FakeDomain) -> bool:
        return True         # the fake's connection is never lost

    def lookup(self, vm_id: str) -> FakeDomain:
        self.lookups += 1
        self._dom(vm_id)
        return FakeDomain(self, vm_id)

    def domains(self) -> list[FakeDomain]:
        return [FakeDomain(self, vm_id) for vm_id in self.doms]

    def _dom(self, vm_id: str) -> etree._Element:
        if vm_id not in self.doms:
            raise LibvirtFailure(ERR_NO_DOMAIN, f"Domain not found: no domain with matching uuid '{vm_id}'")
        return self.doms[vm_id]

    def exists(self, vm_id: str) -> bool:
        return vm_id in self.doms

    def list_ids(self) -> list[str]:
        return list(self.doms)

    def name(self, vm_id: str) -> str:
        return self._dom(vm_id).findtext("name")

    def state(self, vm_id: str) -> str:
        self._dom(vm_id)
        return "up" if self.running[vm_id] else "down"

    def is_persistent(self, vm_id: str) -> bool:
        return True

    def xml(self, vm_id: str, *, inactive: bool = False) -> str:
        self.xml_reads += 1
        dom = self._dom(vm_id)
        if self.running[vm_id] and not inactive:
            dom = etree.fromstring(etree.tostring(dom))
            dom.set("id", "1")   # as libvirt: an active domain's XML carries its runtime id
        return etree.tostring(dom, encoding="unicode")

    def define(self, xml: str) -> FakeDomain:
        self.calls.append(("define", xml))
        el = etree.fromstring(xml)
        vm_id = el.findtext("uuid")
        for other, dom in self.doms.items():
            if other != vm_id and dom.findtext("name") == el.findtext("name"):
                raise LibvirtFailure(9, f"operation failed: domain '{el.findtext('name')}' already exists")
        if vm_id in self.doms and self.doms[vm_id].findtext("name") != el.findtext("name"):
            raise LibvirtFailure(9, f"operation failed: domain is already defined with uuid {vm_id}")
        self.doms[vm_id] = el
        self.running.setdefault(vm_id, False)
        self._lifecycle(vm_id, "defined")
        return FakeDomain(self, vm_id)

    def start(self, vm_id: str) -> None:
        self.calls.append(("start", vm_id))
        self.start_entered.set()
        if self.start_gate is not None:
            self.start_gate.wait(10)
        self._dom(vm_id)
        if self.start_error is not None:
            raise self.start_error
        if self.running[vm_id]:
            raise LibvirtFailure(55, "Requested operation is not valid: domain is already running")
        self.running[vm_id] = True
        self._lifecycle(vm_id, "started")

    def destroy(self, vm_id: str, *, undefine: bool) -> None:
        self.calls.append(("destroy", vm_id))
        self._dom(vm_id)
        if self.running[vm_id]:
            self.running[vm_id] = False
            self._lifecycle(vm_id, "stopped")
        if undefine:
            del self.doms[vm_id], self.running[vm_id]
            self._lifecycle(vm_id, "undefined")

    def stop_outside(self, vm_id: str) -> None:
        """The VM stops without the agent (guest power-off, crash, `virsh destroy`)."""
        self.running[vm_id] = False
        self._lifecycle(vm_id, "stopped")

    def affect_flags(self, vm_id: str) -> int:
        return self.AFFECT_CONFIG | (self.AFFECT_LIVE if self.running[vm_id] else 0)

    def nodedev_xmls(self, caps: list[str], names: list[str] | None = None) -> list[str]:
        if names is None:
            return list(self.nodedevs)
        self.nodedev_lookups += len(names)
        return [x for x in self.nodedevs if etree.fromstring(x.encode()).findtext("name") in names]

    def nodedev_names(self, caps: list[str]) -> list[str]:
        return [name for name, kinds in self.nodedev_kinds.items() if set(kinds) & set(caps)]

    def nodedev_caps(self, name: str) -> list[str]:
        return list(self.nodedev_kinds.get(name, []))

    def attach(self, vm_id: str, device_xml: str, flags: int) -> None:
        self.calls.append(("attach", device_xml))
        if self.attach_error:
            raise self.attach_error
        el = etree.fromstring(device_xml)
        if el.find("address") is None and el.tag == "interface":
            self._slot += 1
            etree.SubElement(el, "address", type="pci", domain="0x0000", bus="0x00",
                             slot=f"0x{self._slot:02x}", function="0x0")
        self._dom(vm_id).find("devices").append(el)

    def _find(self, vm_id: str, device_xml: str) -> etree._Element:
        alias = etree.fromstring(device_xml).find("alias").get("name")
        for el in self._dom(vm_id).find("devices"):
            a = el.find("alias")
            if a is not None and a.get("name") == alias:
                return el
        raise LibvirtFailure(99, "device not found")

    def detach(self, vm_id: str, device_xml: str, flags: int) -> None:
        self.calls.append(("detach", device_xml))
        el = self._find(vm_id, device_xml)
        alias = el.find("alias").get("name")
        if not flags & self.AFFECT_LIVE:
            el.getparent().remove(el)
            return
        if self.removal == "refuse":
            raise LibvirtFailure(1, "internal error: unable to execute QEMU command 'device_del'")
        if self.removal == "event":      # the event arrives before detachDeviceFlags returns
            el.getparent().remove(el)
            self.on_removed(vm_id, alias)
        elif self.removal == "late":
            def later() -> None:
                el.getparent().remove(el)
                self.on_removed(vm_id, alias)
            threading.Timer(self.late_after, later).start()
        elif self.removal == "failed":
            threading.Timer(0.05, lambda: self.on_removal_failed(vm_id, alias)).start()
        # "none": the guest never answers

    def update_device(self, vm_id: str, device_xml: str, flags: int) -> None:
        el = self._find(vm_id, device_xml)
        el.getparent().replace(el, etree.fromstring(device_xml))
