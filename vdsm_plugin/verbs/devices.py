"""The plug and unplug machinery every device verb shares: per-VM lock, hooks, libvirt with the right
flags, reading back what libvirt assigned, and waiting for the guest to release a device."""
from __future__ import annotations

import logging
import time
from typing import Any

from dataclasses import dataclass

from lxml import etree

from vdsm_plugin import domxml
from vdsm_plugin.agent import Agent
from vdsm_plugin.errors import AgentError
from vdsm_plugin.virt import ERR_NO_DOMAIN, Domain, Hypervisor, LibvirtFailure

log = logging.getLogger(__name__)


def vm_key(vm_id: str) -> str:
    return vm_id.lower()


@dataclass
class Vm:
    """A Plugboard domain opened for one verb call: the libvirt handle (kept by the agent between
    calls) and its parsed XML, from which the verb reads what it needs instead of asking libvirt again."""

    id: str
    handle: Domain
    dom: etree._Element

    @property
    def running(self) -> bool:
        """Running or paused: libvirt writes the domain's runtime id only into an active domain's XML."""
        return self.dom.get("id") is not None

    @property
    def name(self) -> str:
        return self.dom.findtext("name") or ""

    def affect_flags(self) -> int:
        """Running VM: live and persistent definition; stopped VM: the persistent one. Every domain
        the agent acts on is one it defined, so it has a persistent definition."""
        return Hypervisor.AFFECT_CONFIG | (Hypervisor.AFFECT_LIVE if self.running else 0)

    def reread(self) -> etree._Element:
        """The XML again, after an operation changed it (libvirt's addresses and aliases)."""
        self.dom = domxml.parse(self.handle.xml())
        return self.dom


def no_vm(vm_id: str) -> AgentError:
    return AgentError("noVM", f"no VM with id {vm_id} on this host", vmId=vm_id)


def open_vm(agent: Agent, vm_id: str, *, inactive: bool = False) -> Vm:
    """The VM, or noVM: also for a domain that lacks the agent's mark, so that the host's other
    domains are invisible to every verb (the same answer as a domain that does not exist)."""
    try:
        handle, xml = _fetch(agent, vm_id, inactive)
    except LibvirtFailure as e:
        if e.code == ERR_NO_DOMAIN:
            raise no_vm(vm_id) from e
        raise
    dom = domxml.parse(xml)
    if not domxml.is_marked(dom):
        agent.forget_domain(vm_id)
        log.warning("refused a verb on domain %s: Plugboard did not define it", vm_id)
        raise no_vm(vm_id)
    return Vm(vm_id, handle, dom)


def _fetch(agent: Agent, vm_id: str, inactive: bool) -> tuple[Domain, str]:
    """The domain's handle (kept by the agent, looked up again after a reconnection) and its XML. A
    kept handle that fails -- its domain undefined and defined again since, the event not handled
    yet -- is dropped and the domain looked up once more."""
    handle = agent.domain(vm_id)
    try:
        return handle, handle.xml(inactive=inactive)
    except LibvirtFailure:
        agent.forget_domain(vm_id)
    handle = agent.domain(vm_id)
    return handle, handle.xml(inactive=inactive)


def hook_env(vm_id: str, *props: dict[str, str] | None) -> dict[str, str]:
    """The hooks' variables: the custom properties, then the VM's id, which no property replaces."""
    env: dict[str, str] = {}
    for p in props:
        env.update(p or {})
    return {**env, "vmId": vm_id}


def run_after_hook(agent: Agent, point: str, xml: str, env: dict[str, str]) -> None:
    """After-hooks report; they cannot undo what is done, so their failures are only logged."""
    try:
        agent.hooks.run(point, xml, env)
    except AgentError as e:
        log.warning("%s hook failed after the fact: %s", point, e)


def reported(vm: Vm, alias: str) -> dict[str, Any]:
    """The device as libvirt reports it after an operation (the guest address it picked). Only that
    device is read: converting all of them cost a plug 0.2 ms."""
    el = domxml.find_device(vm.reread(), alias)
    if el is not None and domxml.kind_of(el) is not None:
        return domxml.device_to_dict(el)
    raise AgentError("deviceNotFound", f"{alias} is not in the domain after the operation", alias=alias)


def find_of_kind(dom, vm_id: str, ref: dict[str, Any], kind: str):
    """The device a verb of `kind` (a domxml REGISTRY kind: interface, hostdev, redirdev, controller)
    names by alias (or, for a NIC, by MAC). An alias of another kind's device is refused like a
    missing device -- the VM has no `kind` of that name -- with the kind it does name, so that no
    verb ever acts on a device of another kind."""
    if kind not in domxml.REGISTRY:
        raise ValueError(f"unknown device kind {kind!r}")
    alias = ref.get("alias")
    el = domxml.find_device(dom, alias) if alias else None
    if el is None and ref.get("macAddr"):
        el = domxml.find_nic_by_mac(dom, ref["macAddr"])
    name = alias or ref.get("macAddr")
    if el is None:
        raise AgentError("deviceNotFound", f"no device {name} on VM {vm_id}", alias=alias)
    found = domxml.kind_of(el)
    if found != kind:
        what = f"{found} ({domxml.device_to_dict(el)['device']})" if found else f"{el.tag} this agent does not manage"
        raise AgentError("deviceNotFound", f"no {kind} {name} on VM {vm_id}: {name} is a {what}",
                         alias=alias, kind=found or el.tag)
    return el


def plug(agent: Agent, vm_id: str, dev: dict[str, Any], *, hook_kind: str, error: str) -> dict[str, Any]:
    """Attach `dev` (a schema device dict) to the VM, under its lock (see plug_opened)."""
    vm_id = vm_key(vm_id)
    with agent.locks.hold(vm_id):
        return plug_opened(agent, open_vm(agent, vm_id), dev, hook_kind=hook_kind, error=error)


def plug_opened(agent: Agent, vm: Vm, dev: dict[str, Any], *, hook_kind: str, error: str,
                resolved: dict[str, Any] | None = None) -> dict[str, Any]:
    """Attach `dev` to a VM the caller opened under its lock: live and persistent when running,
    persistent only when stopped. A device without an alias gets a new one; the result (the device
    as libvirt reports it) carries it. Nothing is left behind when a hook or libvirt refuses."""
    alias = dev.get("alias") or domxml.new_alias()
    dev = {**dev, "alias": alias}
    if domxml.find_device(vm.dom, alias) is not None:
        raise AgentError(error, f"the VM already has a device with alias {alias}", alias=alias)
    env = hook_env(vm.id, dev.get("customProperties"))
    xml = domxml.tostring(domxml.build_device(dev, resolved))
    xml = agent.hooks.run(f"before_{hook_kind}_hotplug", xml, env).xml
    _same_alias(xml, alias, f"before_{hook_kind}_hotplug")
    try:
        vm.handle.attach(xml, vm.affect_flags())
    except LibvirtFailure as e:
        run_after_hook(agent, f"after_{hook_kind}_hotplug_fail", xml, env)
        raise AgentError(error, e.message, libvirtCode=e.code, alias=alias) from e
    result = reported(vm, alias)
    run_after_hook(agent, f"after_{hook_kind}_hotplug", xml, env)
    return result


def _same_alias(xml: str, alias: str, point: str) -> None:
    """A hook may edit the device, not rename it: the device is found again, read back and unplugged
    by its alias. Refused before anything is attached."""
    found = domxml.device_alias(domxml.parse(xml))
    if found != alias:
        raise AgentError("hookFailed", f"the {point} hook changed the device's alias from {alias} to {found}; "
                         "a hook may not rename a device", alias=alias)


def unplug(agent: Agent, vm_id: str, ref: dict[str, Any], *, kind: str, hook_kind: str,
           error: str) -> dict[str, Any]:
    """Detach a device of `kind` (see find_of_kind) and wait for the guest to release it: `removed`
    (with the time it took), `pending` (the guest has not answered yet; the event will land in the
    journal) or a coded error when the guest refused (DEVICE_REMOVAL_FAILED) or libvirt did."""
    vm_id = vm_key(vm_id)
    with agent.locks.hold(vm_id):
        vm = open_vm(agent, vm_id)
        return unplug_opened(agent, vm, ref, kind=kind, hook_kind=hook_kind, error=error)


def unplug_opened(agent: Agent, vm: Vm, ref: dict[str, Any], *, kind: str, hook_kind: str,
                  error: str) -> dict[str, Any]:
    el = find_of_kind(vm.dom, vm.id, ref, kind)
    alias = domxml.device_alias(el) or ref.get("alias")
    env = hook_env(vm.id, ref.get("customProperties"))
    xml = agent.hooks.run(f"before_{hook_kind}_hotunplug", domxml.tostring(el), env).xml
    flags = vm.affect_flags()
    if not flags & Hypervisor.AFFECT_LIVE:
        _detach(vm, xml, flags, error, alias)
        run_after_hook(agent, f"after_{hook_kind}_hotunplug", xml, env)
        return {"status": "removed", "alias": alias, "elapsed": 0.0}
    assert alias is not None    # libvirt names every device of a running domain
    # Register before detaching: the event can arrive before detachDeviceFlags returns.
    removal = agent.removals.expect(vm.id, alias)
    start = time.monotonic()
    try:
        _detach(vm, xml, flags, error, alias)
    except AgentError:
        agent.removals.abandon(removal)
        raise
    outcome = removal.wait(max(0.0, agent.config.unplug_timeout - (time.monotonic() - start)))
    if outcome == "removed":
        run_after_hook(agent, f"after_{hook_kind}_hotunplug", xml, env)
        return {"status": "removed", "alias": alias, "elapsed": round(time.monotonic() - start, 3)}
    if outcome == "failed":
        raise AgentError(error, "the guest refused to release the device (DEVICE_REMOVAL_FAILED)",
                         alias=alias)
    return {"status": "pending", "alias": alias}


def _detach(vm: Vm, xml: str, flags: int, error: str, alias: str | None) -> None:
    try:
        vm.handle.detach(xml, flags)
    except LibvirtFailure as e:
        raise AgentError(error, e.message, libvirtCode=e.code, alias=alias) from e
