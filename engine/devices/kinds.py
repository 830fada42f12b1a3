"""The device kinds, each described once: how messages and audit codes name it, which agent verbs plug
and unplug it and under which parameter, what those verbs (and VM.create) are sent, whether it can be
plugged on a running VM, and what it claims while it is plugged. The state machine (`state`), the live
runner (`live`), the monitor and the REST routes read everything kind-specific from here.

Storage convention: a device row's `spec_params` hold the agent's fields other than type, device,
alias and address (schema/verbs.yaml `controller`, `redirdev`, `hostdev`); a NIC's own columns live
in vm_nics.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from engine import reasons as R, usb
from engine.dao import nics as nics_dao
from engine.dao.devices import RowWrite
from engine.dao.models import VmDevice
from engine.devices import claims
from engine.errors import Reason

NIC_DEVICES = ("bridge", "network", "vnlink", "bridgeless")
NIC_SPEC_PARAMS = ("vlan", "portProfile", "mtu")
PCI_ADDRESS_KEYS = ("type", "domain", "bus", "slot", "function", "multifunction")
USB = "usb"
# Fields of a row's identity that spec_params never override.
_OWN_FIELDS = ("type", "device", "alias", "address")

Payload = Callable[[VmDevice], dict[str, Any]]
Claim = Callable[[Session, VmDevice], list[Reason]]
Release = Callable[[Session, str], None]    # gets the device's id: no row to read
GiveBack = Callable[[Session, str, "dict[str, Any] | None"], None]     # and the failed plug's error, if any


@dataclass(frozen=True)
class RowClaim:
    """A claim that is one row's write, unguarded: a unique constraint refuses it when another holds
    what it takes, failing the statement that carries it; `lost` says why, for the refusal."""

    write: RowWrite
    lost: Callable[[VmDevice], list[Reason]]


@dataclass(frozen=True)
class DeviceKind:
    type: str                   # vm_devices.type
    label: str                  # how a message names the kind: "NIC", "USB controller"
    code: str                   # prefix of the kind's audit codes: NIC_PLUGGED, CONTROLLER_ADDED
    param: str                  # the plug/unplug verbs' parameter: {"vmId": ..., <param>: {...}}
    plug_verb: str
    unplug_verb: str
    hotpluggable: bool          # can be plugged and unplugged while the VM runs
    payload: Payload            # what the plug verb and VM.create get
    ref: Payload                # what the unplug verb gets
    name: Callable[[VmDevice], str]
    claim: Claim | None = None        # taken when the device is to be on the wire
    claim_row: RowClaim | None = None     # the same claim as one row's write a live plug's begin carries
    release: GiveBack | None = None   # given back when it no longer is (with a failed plug's error)
    release_row: RowWrite | None = None   # or, when giving back is one row's write: the transition carries it
    allocated: Release | None = None  # the host has it: the claim becomes an allocation
    # Takes a pcie-root-port of its own on q35 (unless its guest address is on bus 0): see
    # engine.devices.pcie_ports, which applies the address rule.
    root_port: Callable[[VmDevice], bool] = lambda dev: False

    def audit(self, suffix: str) -> str:
        return f"{self.code}_{suffix}"

    @property
    def released_with_transition(self) -> tuple[RowWrite, ...]:
        """The writes a transition that gives the claim back makes in its own statement."""
        return (self.release_row,) if self.release_row is not None else ()

    def give_back(self, s: Session, device_id: str, error: dict[str, Any] | None = None) -> None:
        """Give the claim back (a transition's own statement carries release_row: see state)."""
        if self.release_row is not None:
            self.release_row(s, device_id)
        if self.release is not None:
            self.release(s, device_id, error)

    @property
    def finishes_in_one_statement(self) -> bool:
        """Each transition that ends a live operation is one statement: no hook runs statements of its
        own after the compare-and-set (engine.devices.live runs those without a transaction of their
        own where the database allows: dao.db.one_statement)."""
        return self.release is None and self.allocated is None

    def begins_in_one_statement(self, plug: bool) -> bool:
        """A live plug's (or unplug's) begin is one statement: its claim, if any, is one row's write
        that the compare-and-set carries (engine.devices.state.begin)."""
        return not plug or self.claim is None or self.claim_row is not None

    def describe(self, dev: VmDevice) -> str:
        return f"{self.label} {self.name(dev)}"


def _by_alias(dev: VmDevice) -> dict[str, Any]:
    return {"alias": dev.alias}


def _alias_name(dev: VmDevice) -> str:
    return dev.alias


def pci_address(address: dict[str, Any] | None) -> dict[str, Any] | None:
    """A stored address in the shape schema/verbs.yaml `pciAddress` accepts, or None if it is not PCI."""
    if not address or address.get("type", "pci") != "pci" or "slot" not in address:
        return None
    return {k: address[k] for k in PCI_ADDRESS_KEYS if k in address}


def _generic_payload(dev: VmDevice) -> dict[str, Any]:
    """type/device/alias, the row's spec_params, and the address it kept from an earlier run."""
    params: dict[str, Any] = {"type": dev.type, "device": dev.device, "alias": dev.alias}
    params.update({k: v for k, v in (dev.spec_params or {}).items() if k not in _OWN_FIELDS})
    if dev.address:
        params["address"] = dict(dev.address)
    return params


# ---- NIC ---------------------------------------------------------------------------------------

def nic_payload(dev: VmDevice) -> dict[str, Any]:
    """The `nic` dictionary of schema/verbs.yaml (VM.hotplugNic, VM.create). A kept PCI address is
    sent only at VM.create (a hot plug lets libvirt pick a free slot); see live.plug."""
    nic = dev.nic
    assert nic is not None, f"interface device {dev.id} has no NIC row"
    params: dict[str, Any] = {
        "type": "interface",
        "device": dev.device if dev.device in NIC_DEVICES else "bridge",
        "network": nic.network,
        "alias": dev.alias,
        "macAddr": nic.mac,
        "nicModel": nic.model,
        "linkActive": bool(nic.linked),
    }
    address = pci_address(dev.address)
    if address:
        params["address"] = address
    if dev.boot_order:
        params["bootOrder"] = dev.boot_order
    spec = {k: v for k, v in (dev.spec_params or {}).items() if k in NIC_SPEC_PARAMS}
    if spec:
        params["specParams"] = spec
    if dev.custom_properties:
        params["customProperties"] = {str(k): str(v) for k, v in dev.custom_properties.items()}
    return params


def nic_ref(dev: VmDevice) -> dict[str, Any]:
    """By alias, with the MAC for the agent's logs."""
    assert dev.nic is not None
    return {"type": "interface", "alias": dev.alias, "macAddr": dev.nic.mac}


def _mac_lost(dev: VmDevice) -> list[Reason]:
    assert dev.nic is not None
    return [R.mac_in_use(dev.nic.mac)]


def _claim_mac(s: Session, dev: VmDevice) -> list[Reason]:
    lost = _mac_lost(dev)       # said first: after a failed claim, PostgreSQL reads nothing more
    return [] if nics_dao.claim_mac(s, dev.id) else lost


NIC = DeviceKind(
    type="interface", label="NIC", code="NIC", param="nic",
    plug_verb="VM.hotplugNic", unplug_verb="VM.hotunplugNic", hotpluggable=True,
    payload=nic_payload, ref=nic_ref, name=lambda d: d.nic.name if d.nic is not None else d.alias,
    claim=_claim_mac, claim_row=RowClaim(nics_dao.CLAIM_MAC, _mac_lost), release_row=nics_dao.RELEASE_MAC,
    root_port=lambda dev: True)


# ---- USB controller (cold plug only: QEMU cannot hot-plug one) -----------------------------------

def controller_name(dev: VmDevice) -> str:
    spec = dev.spec_params or {}
    return f"{spec.get('model', dev.device)} (index {spec.get('index', '?')})"


def _controller_payload(dev: VmDevice) -> dict[str, Any]:
    params = _generic_payload(dev)
    if "address" in params and not pci_address(params["address"]):
        del params["address"]
    return params


CONTROLLER = DeviceKind(
    type="controller", label="USB controller", code="CONTROLLER", param="controller",
    plug_verb="VM.addController", unplug_verb="VM.removeController", hotpluggable=False,
    payload=_controller_payload, ref=_by_alias, name=controller_name,
    root_port=lambda dev: dev.device == USB and (dev.spec_params or {}).get("model") != usb.NONE)


# ---- SPICE / TCP USB redirection -------------------------------------------------------------------

def redirdev_name(dev: VmDevice) -> str:
    spec = dev.spec_params or {}
    if dev.device == "tcp":
        return f"{dev.alias} (tcp {spec.get('host')}:{spec.get('port')})"
    return f"{dev.alias} ({dev.device})"


REDIRDEV = DeviceKind(
    type="redirdev", label="USB redirection device", code="REDIRDEV", param="redirdev",
    plug_verb="VM.hotplugRedirdev", unplug_verb="VM.hotunplugRedirdev", hotpluggable=True,
    payload=_generic_payload, ref=_by_alias, name=redirdev_name)


# ---- host devices (USB and PCI passthrough) ------------------------------------------------------

def _hostdev_payload(dev: VmDevice) -> dict[str, Any]:
    params = _generic_payload(dev)
    if dev.boot_order:
        params["bootOrder"] = dev.boot_order
    return params


HOSTDEV = DeviceKind(
    type="hostdev", label="host device", code="HOSTDEV", param="hostdev",
    plug_verb="VM.hotplugHostdev", unplug_verb="VM.hotunplugHostdev", hotpluggable=True,
    payload=_hostdev_payload, ref=_by_alias, name=_alias_name, claim=claims.claim, release=claims.release,
    allocated=claims.allocated, root_port=lambda dev: dev.device == claims.PCI)


#: vm_devices.type -> its kind. The only place a kind is described.
REGISTRY: dict[str, DeviceKind] = {k.type: k for k in (NIC, CONTROLLER, REDIRDEV, HOSTDEV)}


def of(dev: VmDevice) -> DeviceKind:
    return REGISTRY[dev.type]
