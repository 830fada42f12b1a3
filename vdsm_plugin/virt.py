"""The only module of the agent that imports libvirt: a connection with its event loop, and the few
calls the verbs need. libvirt errors become `LibvirtFailure` (code + message) so the verbs can map them
to the agent's own coded errors without touching libvirt.

libvirt-python is imported when the first `Hypervisor` connects, not when this module is imported:
the verbs, the fakes and the agent's whole unit tier import it on a machine without libvirt-python.
The few libvirt numbers the verbs use are spelled here (they are part of libvirt's stable ABI) and
checked against libvirt-python at that first import.
"""
from __future__ import annotations

import contextlib
import functools
import logging
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from types import ModuleType
from typing import Any, Callable

log = logging.getLogger(__name__)

_event_loop_lock = threading.Lock()
_event_loop_started = False

# Callbacks receive (vm_uuid, alias) for device events, (vm_uuid, event_name) for VM lifecycle and
# (node-device name, "created" | "deleted") for host devices appearing and vanishing.
DeviceCallback = Callable[[str, str], None]
LifecycleCallback = Callable[[str, str], None]
NodeDeviceCallback = Callable[[str, str], None]

# The libvirt error code the verbs act on: the VM is not on this host (VIR_ERR_NO_DOMAIN).
ERR_NO_DOMAIN = 42
# virDomainModificationImpact: the running domain, the persistent definition.
AFFECT_LIVE = 1
AFFECT_CONFIG = 2
_ABI = {"VIR_ERR_NO_DOMAIN": ERR_NO_DOMAIN, "VIR_DOMAIN_AFFECT_LIVE": AFFECT_LIVE,
        "VIR_DOMAIN_AFFECT_CONFIG": AFFECT_CONFIG}


@functools.cache
def _libvirt() -> ModuleType:
    """libvirt-python, imported on first use; its numbers must be the ones spelled above."""
    import libvirt

    wrong = {name: getattr(libvirt, name) for name, value in _ABI.items() if getattr(libvirt, name) != value}
    if wrong:
        raise RuntimeError(f"libvirt-python disagrees with vdsm_plugin.virt about {wrong}")
    return libvirt


@functools.cache
def _tables() -> tuple[dict[int, str], dict[int, str], dict[int, str]]:
    """libvirt's node-device events, domain lifecycle events and domain states, as the agent names them."""
    lv = _libvirt()
    nodedev = {
        lv.VIR_NODE_DEVICE_EVENT_CREATED: "created",
        lv.VIR_NODE_DEVICE_EVENT_DELETED: "deleted",
    }
    lifecycle = {
        lv.VIR_DOMAIN_EVENT_DEFINED: "defined",
        lv.VIR_DOMAIN_EVENT_UNDEFINED: "undefined",
        lv.VIR_DOMAIN_EVENT_STARTED: "started",
        lv.VIR_DOMAIN_EVENT_SUSPENDED: "suspended",
        lv.VIR_DOMAIN_EVENT_RESUMED: "resumed",
        lv.VIR_DOMAIN_EVENT_STOPPED: "stopped",
        lv.VIR_DOMAIN_EVENT_SHUTDOWN: "shutdown",
        lv.VIR_DOMAIN_EVENT_CRASHED: "crashed",
    }
    states = {
        lv.VIR_DOMAIN_RUNNING: "up",
        lv.VIR_DOMAIN_BLOCKED: "up",
        lv.VIR_DOMAIN_PAUSED: "paused",
        lv.VIR_DOMAIN_SHUTDOWN: "powering_down",
        lv.VIR_DOMAIN_SHUTOFF: "down",
        lv.VIR_DOMAIN_CRASHED: "down",
        lv.VIR_DOMAIN_PMSUSPENDED: "paused",
    }
    return nodedev, lifecycle, states


@dataclass
class LibvirtFailure(Exception):
    code: int
    message: str

    def __str__(self) -> str:
        return f"libvirt error {self.code}: {self.message}"


def _failure(e: Any) -> LibvirtFailure:
    return LibvirtFailure(e.get_error_code() or 0, e.get_error_message() or str(e))


@contextlib.contextmanager
def _libvirt_call() -> Iterator[None]:
    """Every libvirt error leaves this module as a LibvirtFailure."""
    lv = _libvirt()
    try:
        yield
    except lv.libvirtError as e:
        raise _failure(e) from e


def _start_event_loop() -> None:
    """libvirt delivers events only through a registered loop that some thread keeps running."""
    global _event_loop_started
    lv = _libvirt()
    with _event_loop_lock:
        if _event_loop_started:
            return
        lv.registerErrorHandler(lambda *_: None, None)
        lv.virEventRegisterDefaultImpl()

        def loop() -> None:
            while True:
                lv.virEventRunDefaultImpl()

        threading.Thread(target=loop, name="libvirt-events", daemon=True).start()
        _event_loop_started = True


def _alive(conn: Any, lv: ModuleType) -> bool:
    try:
        return bool(conn.isAlive())
    except lv.libvirtError:
        return False


class Hypervisor:
    """A libvirt connection for the agent. Thread-safe: libvirt's connection objects are."""

    AFFECT_LIVE = AFFECT_LIVE
    AFFECT_CONFIG = AFFECT_CONFIG

    def __init__(self, uri: str = "qemu:///system", nodedev_uri: str | None = None) -> None:
        _start_event_loop()
        self._lv = lv = _libvirt()
        self.uri = uri
        self.nodedev_uri = nodedev_uri if nodedev_uri and nodedev_uri != uri else None
        with _libvirt_call():
            self._conn = lv.open(uri)
            self._nodedev_conn = lv.open(self.nodedev_uri) if self.nodedev_uri else self._conn
        self._callback_ids: list[int] = []
        self._nodedev_callback: tuple[Any, int] | None = None
        self._subscribed: tuple[Any, ...] | None = None
        self._reopen_lock = threading.Lock()
        self.generation = 0         # how many times the connection was opened again

    def current(self, domain: "Domain") -> bool:
        """Whether a domain handle kept from an earlier lookup still belongs to the live connection."""
        self._live()
        return domain.generation == self.generation

    # -- the connections ----------------------------------------------------------------------------
    def _live(self) -> Any:
        return self._open("_conn", self.uri)

    def _nodedev(self) -> Any:
        return self._live() if self.nodedev_uri is None else self._open("_nodedev_conn", self.nodedev_uri)

    def _open(self, attr: str, uri: str) -> Any:
        """The connection kept in `attr`, opened again if libvirtd went away (restarted, crashed):
        without this every later call would fail with "client socket is closed" until the agent
        restarted. The event callbacks are registered again on the new connection; what happened
        meanwhile is read by the engine's reconciliation."""
        conn = getattr(self, attr)
        if _alive(conn, self._lv):
            return conn
        with self._reopen_lock:
            if getattr(self, attr) is conn:
                with _libvirt_call():
                    fresh = self._lv.open(uri)
                log.warning("the libvirt connection to %s was lost; opened it again", uri)
                shared = self._nodedev_conn is self._conn
                setattr(self, attr, fresh)
                if attr == "_conn":
                    if shared:
                        self._nodedev_conn = fresh
                    self.generation += 1        # domain handles of the old connection are stale
                # Only the callbacks of the connection opened again: the other one still has its own.
                self._resubscribe(domain=attr == "_conn", nodedev=attr == "_nodedev_conn" or shared)
                try:
                    conn.close()                # what is left of it on this side
                except self._lv.libvirtError:
                    pass
            return getattr(self, attr)

    def _resubscribe(self, *, domain: bool, nodedev: bool) -> None:
        if self._subscribed is None:
            return
        on_removed, on_removal_failed, on_lifecycle, on_nodedev = self._subscribed
        try:
            if domain:
                self._callback_ids = []
                self._subscribe_domain(on_removed, on_removal_failed, on_lifecycle)
            if nodedev and on_nodedev is not None:
                self._nodedev_callback = None
                self._subscribe_nodedev(on_nodedev)
        except (self._lv.libvirtError, LibvirtFailure) as e:
            log.warning("cannot subscribe to libvirt's events again: %s", e)

    def close(self) -> None:
        for cb in self._callback_ids:
            try:
                self._conn.domainEventDeregisterAny(cb)
            except self._lv.libvirtError:
                pass
        self._callback_ids.clear()
        if self._nodedev_callback:
            conn, cb = self._nodedev_callback
            try:
                conn.nodeDeviceEventDeregisterAny(cb)
            except self._lv.libvirtError:
                pass
            self._nodedev_callback = None
        for conn in {self._conn, self._nodedev_conn}:
            try:
                conn.close()
            except self._lv.libvirtError:
                pass

    # -- events -----------------------------------------------------------------------------------
    def subscribe(self, on_removed: DeviceCallback, on_removal_failed: DeviceCallback,
                  on_lifecycle: LifecycleCallback, on_nodedev: NodeDeviceCallback | None = None) -> None:
        self._subscribed = (on_removed, on_removal_failed, on_lifecycle, on_nodedev)
        self._subscribe_domain(on_removed, on_removal_failed, on_lifecycle)
        if on_nodedev is not None:
            self._subscribe_nodedev(on_nodedev)

    def _subscribe_domain(self, on_removed: DeviceCallback, on_removal_failed: DeviceCallback,
                          on_lifecycle: LifecycleCallback) -> None:
        c, lv = self._conn, self._lv
        _, lifecycle_events, _ = _tables()
        self._callback_ids += [
            c.domainEventRegisterAny(None, lv.VIR_DOMAIN_EVENT_ID_DEVICE_REMOVED,
                                     lambda _c, dom, alias, _o: on_removed(dom.UUIDString(), alias), None),
            c.domainEventRegisterAny(None, lv.VIR_DOMAIN_EVENT_ID_DEVICE_REMOVAL_FAILED,
                                     lambda _c, dom, alias, _o: on_removal_failed(dom.UUIDString(), alias), None),
            c.domainEventRegisterAny(None, lv.VIR_DOMAIN_EVENT_ID_LIFECYCLE,
                                     lambda _c, dom, ev, _d, _o: on_lifecycle(dom.UUIDString(),
                                                                              lifecycle_events.get(ev, str(ev))),
                                     None),
        ]

    def _subscribe_nodedev(self, on_nodedev: NodeDeviceCallback) -> None:
        nodedev_events, _, _ = _tables()

        def nodedev_event(_c, dev, event, _detail, _o) -> None:
            if event in nodedev_events:
                on_nodedev(dev.name(), nodedev_events[event])
        with _libvirt_call():
            self._nodedev_callback = (self._nodedev_conn, self._nodedev_conn.nodeDeviceEventRegisterAny(
                None, self._lv.VIR_NODE_DEVICE_EVENT_ID_LIFECYCLE, nodedev_event, None))

    # -- host -------------------------------------------------------------------------------------
    def versions(self) -> tuple[str, str]:
        def fmt(v: int) -> str:
            return f"{v // 1000000}.{v // 1000 % 1000}.{v % 1000}"
        return fmt(self._live().getLibVersion()), fmt(self._live().getVersion())

    def hostname(self) -> str:
        return self._live().getHostname()

    def capabilities_xml(self) -> str:
        return self._live().getCapabilities()

    def active_networks(self) -> list[str]:
        return sorted(n.name() for n in self._live().listAllNetworks(self._lv.VIR_CONNECT_LIST_NETWORKS_ACTIVE))

    def _nodedev_flags(self, caps: list[str]) -> int:
        flags = 0
        if "usb_device" in caps:
            flags |= self._lv.VIR_CONNECT_LIST_NODE_DEVICES_CAP_USB_DEV
        if "pci" in caps:
            flags |= self._lv.VIR_CONNECT_LIST_NODE_DEVICES_CAP_PCI_DEV
        return flags

    def nodedev_xmls(self, caps: list[str], names: list[str] | None = None) -> list[str]:
        """The XML of the node devices of `caps`; with `names`, of the devices so named alone (one lookup
        each, whatever their capability), a name the host has no device for left out."""
        if names is None:
            with _libvirt_call():
                return [d.XMLDesc(0) for d in self._nodedev().listAllDevices(self._nodedev_flags(caps))]
        xmls = []
        for name in names:
            try:
                xmls.append(self._nodedev().nodeDeviceLookupByName(name).XMLDesc(0))
            except self._lv.libvirtError as e:
                if e.get_error_code() != self._lv.VIR_ERR_NO_NODE_DEVICE:     # gone: not an error
                    raise _failure(e) from e
        return xmls

    def nodedev_names(self, caps: list[str]) -> list[str]:
        with _libvirt_call():
            return [d.name() for d in self._nodedev().listAllDevices(self._nodedev_flags(caps))]

    def nodedev_caps(self, name: str) -> list[str]:
        """The capabilities of a node device ("usb_device", "usb" for an interface, "pci", ...); none
        when it is gone already."""
        try:
            return list(self._nodedev().nodeDeviceLookupByName(name).listCaps())
        except self._lv.libvirtError:
            return []

    # -- domains ----------------------------------------------------------------------------------
    def lookup(self, vm_id: str) -> "Domain":
        """The domain with this uuid: the one libvirt lookup of a verb call. LibvirtFailure
        (ERR_NO_DOMAIN) when there is none."""
        with _libvirt_call():
            return Domain(self, self._live().lookupByUUIDString(vm_id))

    def domains(self) -> list["Domain"]:
        with _libvirt_call():
            return [Domain(self, d) for d in self._live().listAllDomains(0)]

    def define(self, xml: str) -> "Domain":
        with _libvirt_call():
            return Domain(self, self._live().defineXML(xml))

    def xml(self, vm_id: str, *, inactive: bool = False) -> str:
        return self.lookup(vm_id).xml(inactive=inactive)


class Domain:
    """One libvirt domain, looked up once; every call on it is one libvirt round trip."""

    AFFECT_LIVE = AFFECT_LIVE
    AFFECT_CONFIG = AFFECT_CONFIG

    def __init__(self, hv: Hypervisor, dom: Any) -> None:
        self._hv = hv
        self._dom = dom
        self.generation = hv.generation
        self.id: str = dom.UUIDString()

    def xml(self, *, inactive: bool = False) -> str:
        flags = self._hv._lv.VIR_DOMAIN_XML_INACTIVE if inactive else 0
        with _libvirt_call():
            return self._dom.XMLDesc(flags)

    def state(self) -> str:
        with _libvirt_call():
            st, _reason = self._dom.state()
        return _tables()[2].get(st, "unknown")

    def is_persistent(self) -> bool:
        with _libvirt_call():
            return bool(self._dom.isPersistent())

    def start(self) -> None:
        with _libvirt_call():
            self._dom.create()

    def destroy(self, *, undefine: bool) -> None:
        with _libvirt_call():
            if self._dom.isActive():
                self._dom.destroy()
            if undefine and self._dom.isPersistent():
                self._dom.undefineFlags(self._hv._lv.VIR_DOMAIN_UNDEFINE_NVRAM)

    def attach(self, device_xml: str, flags: int) -> None:
        with _libvirt_call():
            self._dom.attachDeviceFlags(device_xml, flags)

    def detach(self, device_xml: str, flags: int) -> None:
        with _libvirt_call():
            self._dom.detachDeviceFlags(device_xml, flags)

    def update_device(self, device_xml: str, flags: int) -> None:
        with _libvirt_call():
            self._dom.updateDeviceFlags(device_xml, flags)
