"""A whole `<domain>` from the schema's `vmParams`.

Choices (see notes/host-lab.md):
- `type='qemu'` (TCG) and no `<cpu>` element: KVM is not usable on these hosts and host-passthrough
  is never wanted; QEMU's default CPU model is used.
- `<features><acpi/><apic/>`: `pc` needs ACPI for PCI hot-plug.
- q35 gets an explicit `pcie-root` (index 0) and enough `pcie-root-port`s (without indexes: libvirt
  numbers them) that `pciePorts` (default 4) of them stay free for hot-plug. libvirt puts every PCIe
  device that has no address on the first free port, so the ports the domain's own devices will take
  are added on top (see `root_port_consumers`). `pciePorts=0` means no spare port: libvirt adds a
  spare one to a q35 domain that has no root port, but only the ports its devices need to one that
  has some (checked on libvirt 9.0), so exactly one is given and libvirt adds the rest (the
  memballoon libvirt always adds takes one). `pciePorts` is ignored for `pc`.
- No USB controller is added: like libvirt, when `devices` has none at index 0 libvirt adds its
  default one (piix3-uhci for pc, qemu-xhci for q35) at index 0. An ich9-ehci1 without companions
  gets function 0 of a free slot, or the guest would not see it (see `controller.function0_address`).
- No `<os><boot dev>`, ever: libvirt refuses it next to a per-device `<boot order>`, which is what a
  device hot-plugged with `bootOrder` carries. libvirt (9.0, checked on the daemon) adds
  `<boot dev='hd'/>` itself to a definition in which no device has a `<boot order>`, so when none
  was given the first bootable device (a NIC, else a host device, else a redirdev) gets
  LAST_BOOT_ORDER, behind any order the engine gives (see `device_boot`). A domain with no bootable
  device at all still gets libvirt's default, and cannot take a device with `bootOrder`.
- Serial port 0 goes to `serialLog` when given (a pty otherwise); console 0 is that same serial port.
- Graphics listen on 127.0.0.1 only. osType and customProperties live in the plugboard metadata,
  which every domain built here carries: it is the agent's mark (see metadata.is_marked).
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from lxml import etree

from vdsm_plugin.domxml import address, common, controller, metadata, redirdev
from vdsm_plugin.domxml.base import invalid, make, to_int
from vdsm_plugin.domxml.devices import REGISTRY, build_device
from vdsm_plugin.errors import AgentError

DOMAIN_TYPE = "qemu"
ARCH = "x86_64"
OS_TYPE = "hvm"
MEMORY_UNIT = "MiB"
FEATURES = ("acpi", "apic")
LIFECYCLE = {"on_poweroff": "destroy", "on_reboot": "restart", "on_crash": "destroy"}
CLOCK_OFFSET = "utc"
OS_FILES = ("kernel", "initrd", "cmdline")  # vmParams key == element under <os>

PCIE_ROOT = {"type": "pci", "index": 0, "model": "pcie-root"}
PCIE_ROOT_PORT = {"type": "pci", "model": "pcie-root-port"}
DEFAULT_PCIE_PORTS = 4
MACHINES_WITH_PCIE = ("q35",)
# Devices libvirt always adds behind a root port of their own on q35 (the virtio memballoon).
LIBVIRT_PCIE_DEFAULTS = 1
# pciePorts=0: one root port, which a device takes; libvirt adds the others the devices need, no spare.
NO_SPARE_PORTS = 1
NO_USB = "none"   # a USB controller model that is no device

LISTEN = "127.0.0.1"
# graphics -> (<graphics> attributes, <video><model type>); "none" has neither
GRAPHICS: dict[str, tuple[dict[str, str], str] | None] = {
    "none": None,
    "vnc": ({"type": "vnc", "port": "-1", "autoport": "yes", "listen": LISTEN}, "vga"),
    "spice": ({"type": "spice", "autoport": "yes", "listen": LISTEN}, "qxl"),
}
DEFAULT_GRAPHICS = "none"
# devices that need a particular graphics type
NEEDS_GRAPHICS = {(redirdev.TAG, "spicevmc"): "spice"}

SERIAL_PORT = "0"

OS_BOOT = "os/boot"
# The boot order the agent gives a device when the engine gave none: the last place (the schema's
# largest bootOrder), so that it never takes an order the engine gives to another device.
LAST_BOOT_ORDER = 65535


def _serial_and_console(log: str | None) -> list[etree._Element]:
    kind = "file" if log else "pty"

    def source() -> etree._Element | None:
        return make("source", {"path": log}) if log else None

    return [
        make("serial", {"type": kind}, source(), make("target", {"port": SERIAL_PORT})),
        make("console", {"type": kind}, source(), make("target", {"type": "serial", "port": SERIAL_PORT})),
    ]


def _graphics(kind: str) -> list[etree._Element]:
    spec = GRAPHICS.get(kind)
    if spec is None:
        return []
    attrs, video = spec
    return [make("graphics", attrs), make("video", None, make("model", {"type": video}))]


def _takes_root_port(dev: Mapping[str, Any]) -> bool:
    addr = dev.get("address") or {}
    if addr and to_int(str(addr.get("bus", ""))) == 0:
        return False  # placed on pcie-root itself; an address on bus N > 0 is root port N
    kind = (dev.get("type"), dev.get("device"))
    if kind == (controller.TAG, controller.USB):
        return dev.get("model") != NO_USB
    return dev.get("type") == "interface" or kind == ("hostdev", "pci")


def root_port_consumers(devices: list[Mapping[str, Any]]) -> int:
    """How many pcie-root-ports the domain's own devices take on q35: each NIC, PCI host device and
    USB controller (unless its guest address is on bus 0), libvirt's default USB controller (when `devices` has
    none at index 0) and the memballoon. Erring high only leaves more ports free."""
    usb0 = any(d.get("type") == controller.TAG and d.get("device") == controller.USB and d.get("index") == 0
               for d in devices)
    return sum(map(_takes_root_port, devices)) + LIBVIRT_PCIE_DEFAULTS + (0 if usb0 else 1)


def _pcie_controllers(params: Mapping[str, Any], devices: list[Mapping[str, Any]]) -> list[etree._Element]:
    free = params.get("pciePorts", DEFAULT_PCIE_PORTS)
    ports = free + root_port_consumers(devices) if free else NO_SPARE_PORTS
    return [make("controller", PCIE_ROOT)] + [make("controller", PCIE_ROOT_PORT) for _ in range(ports)]


def device_boot(dom: etree._Element) -> etree._Element:
    """Per-device boot order only, in place: drop `<os><boot dev>` and, when no device has a
    `<boot order>`, give the first bootable device (REGISTRY's order) LAST_BOOT_ORDER. Used on the
    domains the agent builds and on a stored definition before VM.start defines it again."""
    for el in dom.findall(OS_BOOT):
        os_el = el.getparent()
        assert os_el is not None    # found under <os>
        os_el.remove(el)
    devices = dom.find("devices")
    if devices is None or devices.find(f"*/{common.BOOT[0]}") is not None:
        return dom
    for tag, kind in REGISTRY.items():
        dev_el = devices.find(tag) if kind.bootable else None
        if dev_el is not None:
            common.set_boot_order(dev_el, LAST_BOOT_ORDER)
            break
    return dom


def _check_devices(devices: list[Mapping[str, Any]], graphics: str) -> None:
    aliases = [d["alias"] for d in devices if d.get("alias")]
    dup = sorted({a for a in aliases if aliases.count(a) > 1})
    if dup:
        raise invalid(f"device aliases used more than once: {', '.join(dup)}", field="devices")
    for dev in devices:
        needed = NEEDS_GRAPHICS.get((dev.get("type", ""), dev.get("device", "")))
        if needed and graphics != needed:
            raise invalid(f"{dev.get('alias')}: a {dev['device']} {dev['type']} needs {needed} graphics, "
                          f"not {graphics}", field="devices", alias=dev.get("alias"))
    # The indexes as sent (build_device refuses a missing one); companions share their master's index.
    indexes: list[Any] = [d.get("index") for d in devices
                          if d.get("type") == controller.TAG and d.get("device") == controller.USB
                          and not d.get("master")]
    taken = sorted({i for i in indexes if indexes.count(i) > 1})
    if taken:
        raise AgentError("controllerIndexInUse", f"USB controller index used more than once: {taken}",
                         index=taken[0])


def build_domain(vm_id: str, params: Mapping[str, Any],
                 resolved: Mapping[str, Mapping[str, Any]] | None = None) -> str:
    """The domain XML for `VM.create`/`VM.define`. `resolved` maps a hostdev's alias to the host
    device the caller resolved for it (see hostdev.build)."""
    machine = params["machine"]
    graphics = params.get("graphics") or DEFAULT_GRAPHICS
    devices = list(params.get("devices") or [])
    _check_devices(devices, graphics)
    resolved = resolved or {}

    os_el = make("os", None, make("type", {"arch": ARCH, "machine": machine}, text=OS_TYPE),
                 *(make(key, text=params[key]) for key in OS_FILES if params.get(key)))
    dev_els: list[etree._Element] = []
    if machine in MACHINES_WITH_PCIE:
        dev_els += _pcie_controllers(params, devices)
    built = [build_device(dev, resolved.get(dev.get("alias", ""))) for dev in devices]
    dev_els += built
    dev_els += _serial_and_console(params.get("serialLog"))
    dev_els += _graphics(graphics)
    devices_el = make("devices", None, *dev_els)
    for dev, el in zip(devices, built):
        addr = controller.function0_address(dev, devices_el, own=el)
        if addr:
            el.append(address.to_element(addr))

    dom = make("domain", {"type": DOMAIN_TYPE},
               make("name", text=params["name"]),
               make("uuid", text=vm_id),
               make("memory", {"unit": MEMORY_UNIT}, text=str(params["memSize"])),
               make("vcpu", text=str(params["vcpus"])),
               os_el,
               make("features", None, *(make(f) for f in FEATURES)),
               make("clock", {"offset": CLOCK_OFFSET}),
               *(make(tag, text=action) for tag, action in LIFECYCLE.items()),
               devices_el)
    device_boot(dom)
    metadata.mark(dom)
    for key in metadata.KEYS:
        if params.get(key):
            metadata.set_metadata(dom, key, params[key])
    requests = {dev["alias"]: dev["source"] for dev in devices
                if dev["type"] == "hostdev" and dev["device"] == "usb" and dev.get("alias") in resolved}
    if requests:
        metadata.set_metadata(dom, "usbRequests", requests)
    return etree.tostring(dom, encoding="unicode", pretty_print=True)
