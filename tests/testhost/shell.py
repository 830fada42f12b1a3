"""Commands run in L1 through the shared run directory: a test drops `cmd/<id>.sh`, L1's init runs
each new script in the background (so one slow command blocks no other) and writes `<id>.out`, then
`<id>.rc` last. For what only L1 can see: drivers in sysfs, libvirt's live XML."""
from __future__ import annotations

import time
import uuid
from pathlib import Path


class L1Shell:
    def __init__(self, cmd_dir: Path) -> None:
        self.dir = cmd_dir

    def run(self, script: str, timeout: float = 30.0) -> tuple[int, str]:
        self.dir.mkdir(parents=True, exist_ok=True)
        name = uuid.uuid4().hex
        tmp = self.dir / f"{name}.tmp"
        tmp.write_text(script + "\n")
        tmp.rename(self.dir / f"{name}.sh")     # whole, or not at all, when L1 looks
        rc_file, out_file = self.dir / f"{name}.rc", self.dir / f"{name}.out"
        deadline = time.monotonic() + timeout
        while not rc_file.exists():
            if time.monotonic() >= deadline:
                raise AssertionError(f"L1 did not run {script!r} within {timeout:g} s")
            time.sleep(0.1)
        rc, out = int(rc_file.read_text().strip() or "255"), out_file.read_text(errors="replace")
        for f in self.dir.glob(f"{name}.*"):
            f.unlink(missing_ok=True)
        return rc, out

    def check(self, script: str, timeout: float = 30.0) -> str:
        rc, out = self.run(script, timeout)
        if rc != 0:
            raise AssertionError(f"in L1, {script!r} exited with {rc}: {out}")
        return out

    def usb_drivers(self, port_path: str) -> set[str]:
        """The drivers bound to the interfaces of the USB device at `port_path` ("1-3" -> 1-3:1.0 ...)."""
        out = self.check(f"for i in /sys/bus/usb/devices/{port_path}:*; do "
                         f"[ -e \"$i/driver\" ] && basename \"$(readlink \"$i/driver\")\"; done; true")
        return set(out.split())

    def pci_driver(self, address: str) -> str | None:
        out = self.check(f"d=/sys/bus/pci/devices/{address}/driver; "
                         f"[ -e $d ] && basename \"$(readlink $d)\"; true").strip()
        return out or None

    def hostdev_xml(self, vm_id: str, inactive: bool = False) -> str:
        """The <hostdev> elements of a domain's live (or persistent) XML, as libvirt has them."""
        flag = "--inactive " if inactive else ""
        return self.check(f"virsh -c qemu:///system dumpxml {flag}{vm_id} | sed -n '/<hostdev/,/<\\/hostdev>/p'")
