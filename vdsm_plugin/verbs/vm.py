"""VM.create / VM.define / VM.start / VM.destroy / VM.list / VM.getDevices."""
from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from vdsm_plugin import domxml, hostdevs
from vdsm_plugin.agent import Agent
from vdsm_plugin.config import AgentConfig
from vdsm_plugin.errors import AgentError
from vdsm_plugin.verbs import devices, hostdev as hostdev_verbs
from vdsm_plugin.virt import ERR_NO_DOMAIN, Domain, LibvirtFailure

log = logging.getLogger(__name__)

# How long a start waits for libvirt's "started" event to reach the journal (see _started_seq).
STARTED_EVENT_TIMEOUT = 5.0


# vmParams field -> which configured directories the file must resolve into (after symlinks).
PATH_FIELDS: dict[str, Callable[[AgentConfig], tuple[Path, ...]]] = {
    "kernel": lambda cfg: cfg.image_dirs,
    "initrd": lambda cfg: cfg.image_dirs,
    "serialLog": lambda cfg: (cfg.log_dir,),
}


def check_paths(agent: Agent, params: dict[str, Any]) -> None:
    """QEMU opens these files (and creates the serial log) with its own rights: each must resolve,
    symlinks followed, inside the directories the agent is configured for."""
    for name, dirs_of in PATH_FIELDS.items():
        value = params.get(name)
        if value is None:
            continue
        real = os.path.realpath(value)
        dirs = [os.path.realpath(d) for d in dirs_of(agent.config)]
        if not any(os.path.commonpath([real, d]) == d and real != d for d in dirs):
            raise AgentError("pathNotAllowed", f"{name}: {value!r} is not inside {', '.join(dirs)}",
                             field=f"params/{name}", allowed=dirs)


def vm_info(vm: devices.Vm) -> dict[str, Any]:
    return {"vmId": vm.id, "name": vm.name, "status": vm.handle.state(),
            "persistent": vm.handle.is_persistent(), "devices": domxml.read_devices(vm.dom)}


def _resolve_hostdevs(agent: Agent, vm_id: str, params: dict[str, Any], *,
                      starting: bool = False) -> dict[str, dict[str, Any] | None]:
    """Concrete host devices for the VM's hostdevs, by alias, from one scan of the host. A USB device
    that is gone, when the VM is to start now, follows its startup policy here, whatever names it:
    optional -> None (left out of the domain), else `hostdevRequiredMissing`. Otherwise (a definition)
    it is built from its request and the before_vm_start hook judges it at the start. One device asked
    for twice is refused like a device another VM holds."""
    wanted = [dev for dev in params.get("devices", []) if dev["type"] == "hostdev"]
    if not wanted:
        return {}
    devs = _inventory_for(agent, vm_id, list(hostdev_verbs.CAPS.values()))
    resolved: dict[str, dict[str, Any] | None] = {}
    taken: dict[str, str] = {}
    for dev in wanted:
        try:
            found = hostdev_verbs.resolve(agent, dev, devs)
        except AgentError as e:
            src = dev["source"]
            if e.name == "hostdevMissing" and dev["device"] == "usb" and starting:
                if dev.get("startupPolicy") != "optional":
                    raise AgentError("hostdevRequiredMissing", f"{dev['alias']}: {e.detail}",
                                     alias=dev["alias"]) from e
                resolved[dev["alias"]] = None
                continue
            if e.name != "hostdevMissing" or dev["device"] != "usb" or "vendor" not in src and "bus" not in src:
                raise
            resolved[dev["alias"]] = {"vendorId": src.get("vendor"), "productId": src.get("product"),
                                      "bus": src.get("bus"), "device": src.get("device")}
            continue
        if found["name"] in taken:
            raise AgentError("hostdevBusy", f"{found['name']} is asked for by both {taken[found['name']]} "
                             f"and {dev['alias']}", nodeDev=found["name"])
        taken[found["name"]] = dev["alias"]
        resolved[dev["alias"]] = hostdev_verbs.resolved_source(found)
    return resolved


def _inventory_for(agent: Agent, vm_id: str, caps: list[str]) -> list[dict[str, Any]]:
    """The host's devices of `caps`, those the VM's own shut-off definition holds counted free: that
    definition is the one being replaced or started."""
    devs = hostdev_verbs.inventory(agent, caps)
    for found in devs:
        if found.get("attachedTo") == vm_id:
            found["attachedTo"] = None
    return devs


def _existing(agent: Agent, vm_id: str) -> Domain | None:
    try:
        return agent.hv.lookup(vm_id)
    except LibvirtFailure as e:
        if e.code == ERR_NO_DOMAIN:
            return None
        raise


def _build(agent: Agent, vm_id: str, params: dict[str, Any], *,
           replace_shut_off: bool = False) -> tuple[str, Domain | None, list[str]]:
    """The domain XML for `params`, and the shut-off definition of the VM it replaces, if any.

    With `replace_shut_off` (VM.create) a definition whose domain is shut off -- the VM stopped
    outside the engine: a crash, a guest power-off, `virsh destroy` -- is replaced, since the engine
    owns the desired state; a domain that runs (or is paused) is still `exist`. A domain of that
    uuid without the agent's mark is never touched: `exist`. With `replace_shut_off` the VM starts
    now, so its gone USB devices follow their startup policy (_resolve_hostdevs): the aliases of
    those left out come third."""
    check_paths(agent, params)
    replace = None
    old = _existing(agent, vm_id)
    if old is not None:
        state = old.state()
        mine = domxml.is_marked(domxml.parse(old.xml(inactive=True)))
        if not mine or not replace_shut_off or state != "down":
            raise AgentError("exist", f"VM {vm_id} is already defined on this host" + (f" ({state})" if mine else ""),
                             vmId=vm_id, **({"state": state} if mine else {}))
        replace = old
    resolved = _resolve_hostdevs(agent, vm_id, params, starting=replace_shut_off)
    dropped = sorted(alias for alias, found in resolved.items() if found is None)
    if dropped:
        params = {**params, "devices": [d for d in params["devices"] if d.get("alias") not in dropped]}
    kept = {alias: found for alias, found in resolved.items() if found is not None}
    return domxml.build_domain(vm_id, params, kept), replace, dropped


def _report_dropped(agent: Agent, vm_id: str, aliases: Any) -> None:
    for alias in sorted(aliases):
        agent.journal.append("hostdev_dropped", vm_id=vm_id, alias=alias,
                             data={"reason": "host device not present; startup policy optional"})


def _usb_inventory(agent: Agent) -> str:
    """What the startup-policy hook needs: which USB devices the host has (not who holds them, so no
    scan of the other domains)."""
    devs = hostdevs.inventory(agent.hv.nodedev_xmls(["usb_device"]), agent.whitelist)
    return json.dumps([{k: d.get(k) for k in ("name", "vendorId", "productId", "bus", "device", "portPath")}
                       for d in devs])


def _before_start(agent: Agent, vm_id: str, xml: str, custom: dict[str, str] | None) -> str:
    """Run before_vm_start hooks; report each host device a hook dropped as an event."""
    before = {d["alias"] for d in domxml.read_devices(domxml.parse(xml)) if d["type"] == "hostdev"}
    result = agent.hooks.run("before_vm_start", xml, devices.hook_env(vm_id, custom),
                             extra_files={"_hook_usb_inventory": _usb_inventory(agent)})
    after = {d["alias"] for d in domxml.read_devices(domxml.parse(result.xml)) if d["type"] == "hostdev"}
    _report_dropped(agent, vm_id, before - after)
    return result.xml


def _started_seq(agent: Agent, vm_id: str, after: int) -> int:
    """The journal position of this start: the seq of libvirt's "started" event for it. libvirt
    delivers a connection's events in order, so every event it sent before -- the stop of the
    previous run, the undefine of a replaced definition -- is in the journal by then, at a smaller
    seq; the engine ignores lifecycle events at or before this one. Should the event not come in
    time, the journal's newest seq."""
    def started(event: dict[str, Any]) -> bool:
        return (event["kind"] == "vm_lifecycle" and event["vmId"] == vm_id
                and event["data"].get("event") == "started")

    event = agent.journal.wait_for(started, timeout=STARTED_EVENT_TIMEOUT, after=after)
    if event is None:
        log.warning("no started event for VM %s within %s s", vm_id, STARTED_EVENT_TIMEOUT)
        return agent.journal.last
    return int(event["seq"])


def _start(agent: Agent, vm_id: str, xml: str, custom: dict[str, str] | None, *, created: bool,
           replace: Domain | None = None) -> tuple[devices.Vm, int, dict[str, Any]]:
    """Run the before_vm_start hooks, define and start the domain; returns it, its eventSeq and its
    vmInfo. A create that fails once it has defined the domain -- libvirt refuses to start it, the
    started domain's XML cannot be read back -- undefines it again, and defines again the shut-off
    definition it replaced: the host is left as it was."""
    asked = xml
    xml = _before_start(agent, vm_id, xml, custom)
    journal_before = agent.journal.last
    handle: Domain | None = None
    replaced: str | None = None
    try:
        if replace is not None:
            replaced = replace.xml(inactive=True)
            # Undefined rather than redefined in place: libvirt refuses a new name for the same uuid.
            replace.destroy(undefine=True)
            agent.removals.forget_vm(vm_id)
        handle = agent.hv.define(xml)
        handle.start()
        if xml != asked:
            # A before_vm_start hook edits this start only, as VDSM's do: defined again while the
            # domain runs, the stored definition is the one asked for (an optional USB device a hook
            # left out because it was gone is there for the next start).
            agent.hv.define(asked)
        vm = devices.Vm(vm_id, handle, domxml.parse(handle.xml()))
        info = vm_info(vm)
    except BaseException as e:
        if created and handle is not None:
            _undefine_quietly(handle)
        if replaced is not None and (handle is None or created):
            _define_quietly(agent, vm_id, replaced)
        if isinstance(e, LibvirtFailure):
            raise AgentError("createErr", e.message, libvirtCode=e.code, vmId=vm_id) from e
        raise
    seq = _started_seq(agent, vm_id, journal_before)
    devices.run_after_hook(agent, "after_vm_start", xml, devices.hook_env(vm_id, custom))
    return vm, seq, info


def _define_quietly(agent: Agent, vm_id: str, xml: str) -> None:
    """Put back the definition a failed create replaced; a failure here is logged, the create's own
    error is what the caller gets."""
    try:
        agent.hv.define(xml)
    except LibvirtFailure as e:
        log.error("VM %s: could not define again the definition a failed create replaced: %s", vm_id, e.message)


def _undefine_quietly(handle: Domain) -> None:
    try:
        handle.destroy(undefine=True)
    except LibvirtFailure as e:
        log.error("could not remove the domain %s a failed verb defined: %s", handle.id, e)


def _host_devices_held(agent: Agent, wanted: bool) -> contextlib.AbstractContextManager[Any]:
    """The agent's host-device lock, when the VM asks for host devices: from the check that a device
    is free to the definition (or start) that holds it, as VM.hotplugHostdev holds it, so two VMs --
    one plugged, one defined, created or started -- never both get one device. Taken after the VM's
    own lock, as the plug takes it."""
    return agent.hostdev_lock if wanted else contextlib.nullcontext()


def _asks_host_devices(params: dict[str, Any]) -> bool:
    return any(dev["type"] == "hostdev" for dev in params.get("devices", []))


def create(agent: Agent, vmId: str, params: dict[str, Any]) -> dict[str, Any]:
    vm_id = devices.vm_key(vmId)
    with agent.locks.hold(vm_id), _host_devices_held(agent, _asks_host_devices(params)):
        xml, replace, dropped = _build(agent, vm_id, params, replace_shut_off=True)
        _vm, seq, info = _start(agent, vm_id, xml, params.get("customProperties"), created=True, replace=replace)
        _report_dropped(agent, vm_id, dropped)
        return {**info, "eventSeq": seq}


def define(agent: Agent, vmId: str, params: dict[str, Any]) -> dict[str, Any]:
    vm_id = devices.vm_key(vmId)
    with agent.locks.hold(vm_id), _host_devices_held(agent, _asks_host_devices(params)):
        xml, _, _ = _build(agent, vm_id, params)
        handle: Domain | None = None
        try:
            handle = agent.hv.define(xml)
            return vm_info(devices.Vm(vm_id, handle, domxml.parse(handle.xml())))
        except BaseException as e:
            if handle is not None:
                _undefine_quietly(handle)  # a failed define leaves nothing behind either
            if isinstance(e, LibvirtFailure):
                raise AgentError("createErr", e.message, libvirtCode=e.code, vmId=vm_id) from e
            raise


def _resolve_usb_again(agent: Agent, vm: devices.Vm, requests: dict[str, dict[str, Any]]) -> None:
    """The VM's USB host devices, resolved again from `requests`, the sources they were defined with
    (its usbRequests metadata): a stick asked for by port path, serial or vendor and product gets a
    new device number each time it is plugged in, and the definition names the old one. A request
    that finds no device now, or a busy one, leaves the device as it was: the before_vm_start startup
    policy and libvirt judge it, as before. The caller holds the host-device lock."""
    devs = _inventory_for(agent, vm.id, [hostdev_verbs.CAPS["usb"]])
    for el in list(vm.dom.iterfind("devices/hostdev[@type='usb']")):
        dev = domxml.device_to_dict(el)
        if dev.get("alias") not in requests:
            continue
        asked = {**dev, "source": requests[dev["alias"]]}
        try:
            current = hostdev_verbs.resolve(agent, asked, devs)
        except AgentError:
            continue
        parent = el.getparent()
        assert parent is not None       # found under <devices>
        parent.replace(el, domxml.build_device(asked, hostdev_verbs.resolved_source(current)))


def start(agent: Agent, vmId: str) -> dict[str, Any]:
    vm_id = devices.vm_key(vmId)
    with agent.locks.hold(vm_id):
        vm = devices.open_vm(agent, vm_id, inactive=True)
        if vm.handle.state() != "down":
            vm.reread()   # the live XML: the devices the running VM has
            return {**vm_info(vm), "eventSeq": agent.journal.last}
        custom = domxml.get_metadata(vm.dom, "customProperties") or {}
        domxml.device_boot(vm.dom)  # libvirt may have given the stored definition <os><boot dev>
        usb = domxml.get_metadata(vm.dom, "usbRequests") or {}
        with _host_devices_held(agent, bool(usb)):
            if usb:
                _resolve_usb_again(agent, vm, usb)
            _vm, seq, info = _start(agent, vm_id, domxml.tostring(vm.dom), custom, created=False)
        return {**info, "eventSeq": seq}


def destroy(agent: Agent, vmId: str, undefine: bool = True) -> dict[str, Any]:
    """Under the VM's lock, like create and the device verbs: a destroy sent while a create is still
    starting the domain runs after it (and removes what it made) instead of racing it."""
    vm_id = devices.vm_key(vmId)
    with agent.locks.hold(vm_id):
        vm = devices.open_vm(agent, vm_id)
        try:
            vm.handle.destroy(undefine=undefine)
        except LibvirtFailure as e:
            if e.code == ERR_NO_DOMAIN:
                raise devices.no_vm(vm_id) from e
            raise AgentError("unexpected", e.message, libvirtCode=e.code) from e
        agent.removals.forget_vm(vm_id)
    devices.run_after_hook(agent, "after_vm_destroy", domxml.tostring(vm.dom), devices.hook_env(vm_id))
    return {"vmId": vm_id, "status": "down"}


def list_vms(agent: Agent) -> dict[str, Any]:
    """Plugboard's VMs only: a domain without the agent's mark is not listed."""
    vms = []
    for handle in agent.hv.domains():
        try:
            vm = devices.Vm(handle.id, handle, domxml.parse(handle.xml()))
            if domxml.is_marked(vm.dom):
                vms.append(vm_info(vm))
        except (AgentError, LibvirtFailure):
            continue  # undefined while listing
    return {"vms": vms}


def get_devices(agent: Agent, vmId: str) -> dict[str, Any]:
    return vm_info(devices.open_vm(agent, devices.vm_key(vmId)))


METHODS: dict[str, Callable[..., dict[str, Any]]] = {
    "VM.create": create,
    "VM.define": define,
    "VM.start": start,
    "VM.destroy": destroy,
    "VM.list": list_vms,
    "VM.getDevices": get_devices,
}
