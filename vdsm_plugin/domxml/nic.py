"""`<interface>` from the schema's `nic` dict, and back.

| device     | libvirt                                                               |
|------------|-----------------------------------------------------------------------|
| bridge     | type='bridge'   <source bridge=network/>                              |
| network    | type='network'  <source network=network/>                             |
| vnlink     | type='network'  <source network=network/> + 802.1Qbh <virtualport>    |
| bridgeless | type='ethernet' <target dev=network/>                                 |
| user       | type='user'                                                           |
| sriov      | type='hostdev' managed='yes' <source><address type='pci' .../></source> |

`promisc` (port mirroring) is applied on the host, not in the XML: the builder ignores it.
Reading reports libvirt's model name ("virtio", not VDSM's "pv"); callers map it if they need to.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from lxml import etree

from vdsm_plugin.domxml import address, common
from vdsm_plugin.domxml.base import ensure_path, get_attr, invalid, make, set_attrs, to_int

TAG = "interface"


@dataclass(frozen=True)
class Kind:
    iface_type: str
    source_attr: str | None = None    # the <source> attribute that `network` names
    target_dev: bool = False          # `network` names the tap device (<target dev>)
    virtualport: str | None = None    # <virtualport type>, with specParams.portProfile as profileid
    hostdev: bool = False             # a PCI function given by specParams.hostdevAddress
    model: bool = True                # has a <model type>


KINDS: dict[str, Kind] = {
    "bridge": Kind("bridge", source_attr="bridge"),
    "network": Kind("network", source_attr="network"),
    "vnlink": Kind("network", source_attr="network", virtualport="802.1Qbh"),
    "bridgeless": Kind("ethernet", target_dev=True),
    "user": Kind("user"),
    "sriov": Kind("hostdev", hostdev=True, model=False),
}

MODELS = {"pv": "virtio"}          # VDSM model name -> libvirt's; other names are libvirt's already
LINK = {True: "up", False: "down"}  # linkActive -> <link state>; no <link> means up
MANAGED = "yes"                    # a VF given to the guest is detached from its host driver by libvirt

MAC = ("mac", "address")
MODEL = ("model", "type")
LINK_STATE = ("link", "state")
TARGET_DEV = ("target", "dev")
VIRTUALPORT = ("virtualport", "type")
PROFILE = ("virtualport/parameters", "profileid")
SOURCE_ADDRESS = "source/address"

# specParams key -> (element path, attribute): integers carried as one attribute each.
SPEC_ATTRS: dict[str, tuple[str, str]] = {
    "vlan": ("vlan/tag", "id"),
    "mtu": ("mtu", "size"),
}

# specParams that only one kind of NIC can carry.
SPEC_ONLY_FOR = {"portProfile": "virtualport", "hostdevAddress": "hostdev"}


def _kind(dev: Mapping[str, Any]) -> Kind:
    try:
        return KINDS[dev["device"]]
    except KeyError:
        raise invalid(f"unknown NIC device kind {dev.get('device')!r}", field="device") from None


def build(dev: Mapping[str, Any], resolved_source: Mapping[str, Any] | None = None) -> etree._Element:
    kind = _kind(dev)
    spec = dev.get("specParams") or {}
    for key, needs in SPEC_ONLY_FOR.items():
        if key in spec and not getattr(kind, needs):
            raise invalid(f"specParams.{key} does not apply to a {dev['device']} NIC", field=f"specParams.{key}")
    network = dev.get("network")
    if (kind.source_attr or kind.target_dev) and not network:
        raise invalid(f"a {dev['device']} NIC needs a network", field="network")
    if kind.hostdev and not spec.get("hostdevAddress"):
        raise invalid("an sriov NIC needs specParams.hostdevAddress", field="specParams.hostdevAddress")
    if not dev.get("macAddr"):
        raise invalid("a NIC needs macAddr", field="macAddr")

    el = make(TAG, {"type": kind.iface_type, "managed": MANAGED if kind.hostdev else None},
              make(MAC[0], {MAC[1]: dev["macAddr"]}))
    if kind.source_attr:
        el.append(make("source", {kind.source_attr: network}))
    if kind.hostdev:
        ensure_path(el, "source").append(address.to_element({"type": "pci", **spec["hostdevAddress"]}))
    if kind.virtualport:
        el.append(make(VIRTUALPORT[0], {VIRTUALPORT[1]: kind.virtualport}))
        if spec.get("portProfile"):
            set_attrs(ensure_path(el, PROFILE[0]), {PROFILE[1]: spec["portProfile"]})
    if kind.target_dev:
        el.append(make(TARGET_DEV[0], {TARGET_DEV[1]: network}))
    if kind.model and dev.get("nicModel"):
        el.append(make(MODEL[0], {MODEL[1]: MODELS.get(dev["nicModel"], dev["nicModel"])}))
    if dev.get("linkActive") is not None:
        set_link_state(el, dev["linkActive"])
    for key, (path, attr) in SPEC_ATTRS.items():
        if spec.get(key) is not None:
            set_attrs(ensure_path(el, path), {attr: spec[key]})
    for child in common.tail(dev):
        if child is not None:
            el.append(child)
    return el


def set_link_state(el: etree._Element, active: bool) -> etree._Element:
    """Set `<link state='up|down'>` on an interface in place (what VM.updateNic changes live)."""
    set_attrs(ensure_path(el, LINK_STATE[0]), {LINK_STATE[1]: LINK[bool(active)]})
    return el


def kind_of(el: etree._Element) -> str:
    """The schema device kind of an `<interface>`; libvirt's type when no kind matches."""
    iface_type = el.get("type")
    vport = get_attr(el, *VIRTUALPORT)
    fallback = None
    for name, kind in KINDS.items():
        if kind.iface_type != iface_type:
            continue
        if kind.virtualport is not None and kind.virtualport == vport:
            return name
        if kind.virtualport is None and fallback is None:
            fallback = name
    return fallback or iface_type or TAG


def read(el: etree._Element) -> dict[str, Any]:
    name = kind_of(el)
    kind = KINDS.get(name)
    out = common.base_dict(el, name)
    mac = get_attr(el, *MAC)
    if mac:
        out["macAddr"] = mac
    network = None
    if kind and kind.source_attr:
        network = get_attr(el, "source", kind.source_attr)
    elif kind and kind.target_dev:
        network = get_attr(el, *TARGET_DEV)
    if network:
        out["network"] = network
    model = get_attr(el, *MODEL)
    if model:
        out["nicModel"] = model
    state = get_attr(el, *LINK_STATE)
    out["linkActive"] = state != LINK[False]
    src = el.find(SOURCE_ADDRESS)
    if src is not None:
        out["source"] = address.to_dict(src)
    spec: dict[str, Any] = {}
    for key, (path, attr) in SPEC_ATTRS.items():
        value = to_int(get_attr(el, path, attr))
        if value is not None:
            spec[key] = value
    profile = get_attr(el, *PROFILE)
    if profile:
        spec["portProfile"] = profile
    if spec:
        out["specParams"] = spec
    return out


def find_by_mac(dom: etree._Element, mac: str) -> etree._Element | None:
    wanted = mac.lower()
    for el in dom.iterfind(f"devices/{TAG}"):
        if (get_attr(el, *MAC) or "").lower() == wanted:
            return el
    return None
