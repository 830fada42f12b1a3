"""The tiny test guest built by scripts/build-guest.sh, and helpers to watch its serial log.

The guest prints, on ttyS0 (one line each; the tty ends lines with "\\r\\n"):

    PLUGBOARD-GUEST-READY                      once its drivers are loaded: plug devices after this
    PB-NETS: eth0=52:54:00:aa:bb:cc eth1=...   at start and whenever its set of NICs changes
    PB-USBHC: 0000:00:01.2=uhci:8086:7020 ...  its USB host controllers (PCI address=kind:vendor:device,
                                               kind from the PCI class: uhci, ohci, ehci, xhci): at
                                               start, after every PB-NETS line, whenever they change
    PB-USB: 1-1=0627:0001 ...                  at start and whenever its set of USB devices changes

Tests point a `<serial type='file'>` at a file and read it with `wait_for_serial`, `guest_nets` and
`guest_usb_controllers`.
"""
from __future__ import annotations

import hashlib
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import escape, quoteattr

REPO = Path(__file__).resolve().parents[2]
READY = "PLUGBOARD-GUEST-READY"
CMDLINE = "console=ttyS0 quiet panic=-1 rdinit=/init"
SETUP_HINT = "run `sudo bash scripts/setup-host.sh` (or `make setup`) first"


class SerialTimeout(AssertionError):
    """The expected line did not show up in the serial log in time."""


@dataclass(frozen=True)
class Guest:
    kernel: Path
    initrd: Path
    cmdline: str = CMDLINE


def guest_dir() -> Path:
    """Where scripts/build-guest.sh puts the guest (same default and variable)."""
    return Path(os.environ.get("PLUGBOARD_GUEST_DIR") or REPO / "var" / "guest")


BUILD_SCRIPT = REPO / "scripts" / "build-guest.sh"


def find_guest() -> Guest:
    """The built guest; raises FileNotFoundError saying how to build it when it is missing or was
    built by another version of scripts/build-guest.sh (its build-id is the script's sha256), whose
    /init may not print what the tests read."""
    d = guest_dir()
    guest = Guest(kernel=d / "vmlinuz", initrd=d / "initrd.gz")
    missing = [str(p) for p in (guest.kernel, guest.initrd) if not p.is_file() or p.stat().st_size == 0]
    if missing:
        raise FileNotFoundError(f"test guest not built (missing {', '.join(missing)}): {SETUP_HINT}")
    wanted = hashlib.sha256(BUILD_SCRIPT.read_bytes()).hexdigest()
    try:
        built = (d / "build-id").read_text().strip()
    except FileNotFoundError:
        built = "(none)"
    if built != wanted:
        raise FileNotFoundError(f"test guest in {d} is out of date (build-id {built[:12]}, "
                                f"scripts/build-guest.sh is {wanted[:12]}): {SETUP_HINT}")
    return guest


def _complete_lines(path: Path, offset: int):
    """Yield (line without its end, offset just after it) for each whole line from `offset` on.

    A line still being written (no "\\n" yet) is left for the next read."""
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            data = f.read()
    except FileNotFoundError:
        return
    pos = 0
    while (end := data.find(b"\n", pos)) != -1:
        line = data[pos:end].rstrip(b"\r").decode("utf-8", "replace")
        pos = end + 1
        yield line, offset + pos


def _tail(path: Path, n: int = 15) -> str:
    try:
        lines = Path(path).read_bytes().decode("utf-8", "replace").replace("\r", "").splitlines()
    except FileNotFoundError:
        return "(no serial file yet)"
    return "\n".join(lines[-n:]) or "(empty)"


def wait_for_serial(path: str | os.PathLike, pattern: str | re.Pattern, timeout: float = 60.0,
                    after_offset: int = 0, interval: float = 0.05) -> tuple[re.Match, int]:
    """Poll the serial log until one line (at or after byte `after_offset`) matches `pattern`.

    The pattern is searched in each complete line on its own, without the line end, so `$` means
    the end of the line. Returns the match and the byte offset just after the matching line: pass
    it as `after_offset` to wait for something that happens later. Raises SerialTimeout (with the
    end of the log) when nothing matches within `timeout` seconds.
    """
    path = Path(path)
    regex = re.compile(pattern) if isinstance(pattern, str) else pattern
    deadline = time.monotonic() + timeout
    offset = after_offset
    while True:
        for line, next_offset in _complete_lines(path, offset):
            offset = next_offset
            if m := regex.search(line):
                return m, next_offset
        if time.monotonic() >= deadline:
            raise SerialTimeout(f"no line matching {regex.pattern!r} in {path} after {timeout:g} s; "
                                f"it ends with:\n{_tail(path)}")
        time.sleep(interval)


def _last_line(path: str | os.PathLike, prefix: str) -> str | None:
    last = None
    for line, _ in _complete_lines(Path(path), 0):
        if line.startswith(prefix):
            last = line
    return last


def _pairs(line: str, prefix: str) -> dict[str, str]:
    return dict(item.split("=", 1) for item in line[len(prefix):].split() if "=" in item)


def guest_nets(path: str | os.PathLike) -> dict[str, str]:
    """The guest's NICs as {name: mac} from the last PB-NETS line (lower-case MACs, `lo` left out).

    Raises LookupError when the guest has not printed a PB-NETS line yet."""
    line = _last_line(path, "PB-NETS:")
    if line is None:
        raise LookupError(f"no PB-NETS line in {path} yet; it ends with:\n{_tail(Path(path))}")
    return _pairs(line, "PB-NETS:")


def guest_usb(path: str | os.PathLike) -> dict[str, str]:
    """The guest's USB devices as {port: "vendor:product"} from the last PB-USB line."""
    line = _last_line(path, "PB-USB:")
    if line is None:
        raise LookupError(f"no PB-USB line in {path} yet; it ends with:\n{_tail(Path(path))}")
    return _pairs(line, "PB-USB:")


def guest_usb_controllers(path: str | os.PathLike) -> dict[str, dict[str, str]]:
    """The guest's USB host controllers from the last PB-USBHC line, by PCI address:
    {"0000:00:1d.7": {"kind": "ehci", "vendor": "8086", "device": "293a"}}.

    Raises LookupError when the guest has not printed a PB-USBHC line yet."""
    line = _last_line(path, "PB-USBHC:")
    if line is None:
        raise LookupError(f"no PB-USBHC line in {path} yet; it ends with:\n{_tail(Path(path))}")
    out = {}
    for addr, desc in _pairs(line, "PB-USBHC:").items():
        kind, vendor, device = desc.split(":")
        out[addr] = {"kind": kind, "vendor": vendor, "device": device}
    return out


def domain_xml(name: str, uuid: str, kernel: str | os.PathLike, initrd: str | os.PathLike,
               serial_path: str | os.PathLike, machine: str = "pc", extra_devices: str = "",
               memory_mib: int = 256, cmdline: str = CMDLINE) -> str:
    """A minimal TCG domain that boots the test guest, for tests that need a raw libvirt domain.

    `extra_devices` is device XML put inside <devices> as is. ACPI is on: `pc` needs it for PCI
    hot-plug. The serial port (and console) write to `serial_path`; libvirt truncates it at start.
    """
    serial = quoteattr(str(serial_path))
    return f"""<domain type='qemu'>
  <name>{escape(name)}</name>
  <uuid>{escape(uuid)}</uuid>
  <memory unit='MiB'>{int(memory_mib)}</memory>
  <vcpu>1</vcpu>
  <os>
    <type arch='x86_64' machine={quoteattr(machine)}>hvm</type>
    <kernel>{escape(str(kernel))}</kernel>
    <initrd>{escape(str(initrd))}</initrd>
    <cmdline>{escape(cmdline)}</cmdline>
  </os>
  <features><acpi/><apic/></features>
  <devices>
    <serial type='file'><source path={serial}/><target port='0'/></serial>
    <console type='file'><source path={serial}/><target type='serial' port='0'/></console>
    <memballoon model='none'/>
    {extra_devices}
  </devices>
</domain>
"""
