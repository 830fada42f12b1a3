"""USB facts the engine decides with: libvirt's USB controller models with their ports, the seed's short
names, oVirt's EHCI-with-companions layout, and how many ports a VM's controllers leave free.

A VM with no USB controller row gets its machine type's default controller at index 0 (the agent adds
it: pc -> piix3-uhci, q35 -> qemu-xhci); a row with model `none` means no USB at all.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

#: libvirt model -> root-hub ports (QEMU's defaults; xHCI takes a `ports` override). libvirt's
#: vt82c686b-uhci is left out: QEMU's x86 build has no such device.
PORTS: dict[str, int] = {
    "piix3-uhci": 2, "piix4-uhci": 2, "ich9-uhci1": 2, "ich9-uhci2": 2, "ich9-uhci3": 2,
    "ehci": 6, "ich9-ehci1": 6, "pci-ohci": 3, "nec-xhci": 4, "qemu-xhci": 4, "none": 0,
}
#: The seed's short names.
SHORT_NAMES = {"ehci": "ehci", "xhci": "qemu-xhci", "uhci": "piix3-uhci"}
#: Models the agent builds (schema/verbs.yaml controller.model).
MODELS = tuple(PORTS)
#: Every name a request may give: the models, then the short names that are not models themselves.
NAMES = MODELS + tuple(name for name in SHORT_NAMES if name not in PORTS)
#: oVirt's layout: an ICH9 EHCI and its three UHCI companions share one index; each companion serves
#: two of the EHCI's ports (master startport) for USB 1 devices, so it adds no port of its own.
COMPANIONS = (("ich9-uhci1", 0), ("ich9-uhci2", 2), ("ich9-uhci3", 4))
COMPANION_MODELS = frozenset(m for m, _ in COMPANIONS)
XHCI_MODELS = frozenset({"nec-xhci", "qemu-xhci"})
MAX_INDEX = 31
DEFAULT_MODEL = {"pc": "piix3-uhci", "q35": "qemu-xhci"}
NONE = "none"       # the model that disables USB: it stands alone


def model_of(name: str) -> str | None:
    """A libvirt model, or a short name resolved to one; None when unknown."""
    if name in PORTS:
        return name
    return SHORT_NAMES.get(name)


@dataclass(frozen=True)
class Controller:
    model: str
    index: int
    ports: int | None = None
    master: int | None = None      # a companion's startport

    def spec(self) -> dict[str, Any]:
        """The row's spec_params: the agent's controller fields."""
        spec: dict[str, Any] = {"model": self.model, "index": self.index}
        if self.ports is not None:
            spec["ports"] = self.ports
        if self.master is not None:
            spec["master"] = {"startport": self.master}
        return spec


def layout(model: str, count: int, indexes: Iterable[int], *, ports: int | None = None,
           companions: bool = False) -> list[Controller]:
    """`count` controllers of `model` at `indexes` (one per controller), each ICH9 EHCI with its three
    companions when asked."""
    out: list[Controller] = []
    for index in list(indexes)[:count]:
        out.append(Controller(model, index, ports))
        if companions:
            out += [Controller(m, index, master=start) for m, start in COMPANIONS]
    return out


def next_free(used: Iterable[int], count: int) -> list[int]:
    """The `count` lowest indexes not in `used` (may run past MAX_INDEX: the caller refuses that)."""
    taken, i = set(used), 0
    out: list[int] = []
    while len(out) < count:
        if i not in taken:
            out.append(i)
        i += 1
    return out


def free_ports(machine: str, controllers: Iterable[dict[str, Any]], devices_on_usb: int) -> int:
    """Ports the VM's USB controllers (their spec_params) leave once `devices_on_usb` devices sit on
    them; the machine's default controller counts when no controller takes index 0."""
    specs = list(controllers)
    if any(c.get("model") == NONE for c in specs):
        return -devices_on_usb          # USB is disabled for the VM
    total = sum(PORTS.get(c.get("model", ""), 0) if c.get("ports") is None else int(c["ports"])
                for c in specs if c.get("model") not in COMPANION_MODELS)
    if not any(c.get("index") == 0 for c in specs):
        total += PORTS[DEFAULT_MODEL.get(machine, "piix3-uhci")]
    return total - devices_on_usb


def on_usb(dev: Any) -> bool:
    """Whether a VM device row takes a USB port while it is active: a redirection device or a USB
    host device that is plugged (the desired state)."""
    return bool(dev.is_plugged) and (dev.type == "redirdev" or (dev.type == "hostdev" and dev.device == "usb"))
