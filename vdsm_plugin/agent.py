"""Everything a verb needs on this host, built once at start and handed to each verb as its context."""
from __future__ import annotations

import contextlib
import logging
import os
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from vdsm_plugin import domxml
from vdsm_plugin.config import AgentConfig
from vdsm_plugin.errors import AgentError
from vdsm_plugin.hooks import HookRunner
from vdsm_plugin.journal import Journal
from vdsm_plugin.removals import Removals
from vdsm_plugin.virt import Domain, Hypervisor, LibvirtFailure
from vdsm_plugin.whitelist import Whitelist

log = logging.getLogger(__name__)

# The node devices whose coming and going the journal reports: what Host.hostdevListByCaps lists.
# Not a USB device's interfaces, whose names start with usb_ too (usb_1_6 has usb_1_6_1_0).
HOSTDEV_CAPS = ("usb_device", "pci")


@dataclass
class _VmLock:
    lock: threading.Lock = field(default_factory=threading.Lock)
    users: int = 0          # calls that hold or wait for it


@dataclass
class VmLocks:
    """Device operations on one VM run one at a time (concurrent plugs used to collide on aliases and
    slots); operations on different VMs run in parallel. A VM's lock lives while someone holds or
    waits for it, so that calls naming any number of VM ids leave nothing behind."""

    timeout: float
    _locks: dict[str, _VmLock] = field(default_factory=dict)
    _guard: threading.Lock = field(default_factory=threading.Lock)

    @contextlib.contextmanager
    def hold(self, vm_id: str) -> Iterator[None]:
        with self._guard:
            entry = self._locks.setdefault(vm_id, _VmLock())
            entry.users += 1
        try:
            if not entry.lock.acquire(timeout=self.timeout):
                raise AgentError("operationInFlight", f"VM {vm_id} is busy with another device operation",
                                 vmId=vm_id)
            try:
                yield
            finally:
                entry.lock.release()
        finally:
            with self._guard:
                entry.users -= 1
                if entry.users == 0:
                    del self._locks[vm_id]

    def __len__(self) -> int:
        with self._guard:
            return len(self._locks)


def host_id(path: Path) -> str:
    """The agent's identity: a UUID made at its first start and kept at `path` (written whole or not at
    all), so that the engine can tell one agent registered twice, under another name or URL. A file
    that does not hold one stops the start: a new identity would make a registered host a stranger."""
    try:
        text = path.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        made = str(uuid.uuid4())
        partial = path.with_name(path.name + ".new")
        partial.write_text(made + "\n", encoding="ascii")
        os.replace(partial, path)
        return made
    try:
        return str(uuid.UUID(text))
    except ValueError:
        raise ValueError(f"{path} does not hold this agent's identity (a UUID): {text[:40]!r}") from None


@dataclass
class Agent:
    config: AgentConfig
    hv: Hypervisor
    journal: Journal
    hooks: HookRunner
    whitelist: Whitelist
    removals: Removals
    locks: VmLocks
    # Held while a host device is resolved and attached, so two VMs can never get one device.
    hostdev_lock: threading.Lock = field(default_factory=threading.Lock)
    # The host devices present (HOSTDEV_CAPS), by node-device name: a "deleted" event names a device
    # that can no longer be asked what it was.
    hostdev_names: set[str] = field(default_factory=set)
    # The libvirt handles of the domains verbs opened, by uuid (see domain()).
    handles: dict[str, Domain] = field(default_factory=dict)
    # This agent's identity (Host.getCapabilities hostId; see host_id()).
    host_id: str = ""

    @classmethod
    def start(cls, config: AgentConfig) -> "Agent":
        config.state_dir.mkdir(parents=True, exist_ok=True)
        journal = Journal(config.journal_path)
        removals = Removals(journal, config.inflight_path)
        hv = Hypervisor(config.libvirt_uri, config.nodedev_uri)
        hooks = HookRunner(config.hooks_dir, timeout=config.hook_timeout, scratch_dir=config.hook_scratch_dir)
        hooks.clear_scratch()
        agent = cls(config=config, hv=hv, journal=journal, hooks=hooks,
                    whitelist=Whitelist.from_config(config.whitelist),
                    removals=removals, locks=VmLocks(config.lock_timeout), host_id=host_id(config.host_id_path))
        hv.subscribe(removals.on_removed, removals.on_removal_failed, agent._on_lifecycle, agent._on_nodedev)
        agent.hostdev_names.update(hv.nodedev_names(list(HOSTDEV_CAPS)))
        removals.recover(agent._device_present)
        return agent

    def domain(self, vm_id: str) -> Domain:
        """The domain's libvirt handle, looked up once and kept: a lookup is a round trip to libvirtd
        (0.3 ms of every verb call), and a handle keeps working while its domain exists, since
        libvirtd finds the domain by its uuid at every call. LibvirtFailure (ERR_NO_DOMAIN) when
        there is none."""
        handle = self.handles.get(vm_id)
        if handle is None or not self.hv.current(handle):     # none yet, or libvirtd was restarted
            handle = self.handles[vm_id] = self.hv.lookup(vm_id)
        return handle

    def forget_domain(self, vm_id: str) -> None:
        self.handles.pop(vm_id, None)

    def _device_present(self, vm_id: str, alias: str) -> bool | None:
        try:
            return domxml.find_device(domxml.parse(self.hv.xml(vm_id)), alias) is not None
        except LibvirtFailure:
            return None

    def _on_lifecycle(self, vm_id: str, event: str) -> None:
        if event in ("stopped", "crashed", "undefined"):
            self.removals.forget_vm(vm_id)
        if event == "undefined":
            self.forget_domain(vm_id)
        self.journal.append("vm_lifecycle", vm_id=vm_id, data={"event": event})

    def _on_nodedev(self, name: str, event: str) -> None:
        """A host device appeared or vanished (a USB stick plugged in or pulled out)."""
        if event == "created":
            if not set(self.hv.nodedev_caps(name)) & set(HOSTDEV_CAPS):
                return
            self.hostdev_names.add(name)
            self.journal.append("hostdev_added", data={"name": name})
        elif name in self.hostdev_names:
            self.hostdev_names.discard(name)
            self.journal.append("hostdev_removed", data={"name": name})

    def close(self) -> None:
        self.hv.close()
