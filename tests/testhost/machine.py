"""The test host (L1) as a QEMU process on this machine (L0): its command line, its boot, the agent
inside it, USB devices plugged and pulled through QEMU's monitor, and its end.

L1 is a q35 machine under TCG with an emulated Intel IOMMU and the hardware the agent passes through
to its own guests (L2): on an xHCI controller two identical 0627:0001 devices (keyboard and tablet:
ambiguous on purpose), a USB stick with a serial and a USB serial adapter; an e1000e alone on a
PCIe root port. Its root filesystem is the image tests/testhost/build-image.sh made, booted with
`-snapshot` so that nothing a run does survives it. This checkout is shared read-only over 9p (L1
runs the agent from it) and a run directory read-write (agent.toml, certificates, the agent's,
libvirtd's and L2's logs). The agent's port is forwarded to 127.0.0.1 here by QEMU's user network.
"""
from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.testhost.qmp import Qmp, QmpError

REPO = Path(__file__).resolve().parents[2]
AGENT_PORT = 54321            # the agent's port inside L1
READY = "PLUGBOARD-L1-READY"
FAILED = "PB-L1-FAILED"
STICK_SERIAL = "STICK01"
KERNEL_CMDLINE = "console=ttyS0 intel_iommu=on panic=-1 quiet"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tail(path: Path, n: int = 40) -> str:
    try:
        text = path.read_bytes().decode("utf-8", "replace").replace("\r", "")
    except FileNotFoundError:
        return f"({path} does not exist)"
    return "\n".join(text.splitlines()[-n:]) or "(empty)"


class BootError(RuntimeError):
    pass


@dataclass
class TestHost:
    """One L1 machine. `run_dir` holds its QMP socket, serial log and QEMU's output; `share` (inside
    it) is what L1 sees at /opt/plugboard/run."""

    __test__ = False    # not a test class, whatever pytest thinks of the name

    image_dir: Path
    run_dir: Path
    memory_mib: int = 3584
    cpus: int = 2
    port: int = field(default_factory=free_port)
    tls: Any = None         # the client's TLS settings for the agent in L1
    proc: subprocess.Popen | None = None
    qmp: Qmp | None = None

    @property
    def share(self) -> Path:
        return self.run_dir / "share"

    @property
    def serial_log(self) -> Path:
        return self.run_dir / "serial.log"

    @property
    def qemu_log(self) -> Path:
        return self.run_dir / "qemu.log"

    @property
    def qmp_socket(self) -> Path:
        return self.run_dir / "qmp.sock"

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}/jsonrpc"

    def command(self) -> list[str]:
        img = self.image_dir
        stick = self.run_dir / "stick.img"
        return [
            "qemu-system-x86_64", "-nodefaults", "-display", "none",
            "-machine", "q35,accel=tcg", "-cpu", "max", "-smp", str(self.cpus), "-m", str(self.memory_mib),
            # First, so that every PCI device is behind it; caching-mode lets L1 assign devices (VFIO).
            "-device", "intel-iommu,intremap=on,caching-mode=on",
            "-kernel", str(img / "vmlinuz"), "-initrd", str(img / "initrd.gz"), "-append", KERNEL_CMDLINE,
            "-drive", f"file={img / 'l1.img'},if=none,id=root,format=raw,snapshot=on,cache=unsafe",
            "-device", "virtio-blk-pci,drive=root",
            "-fsdev", f"local,id=src,path={REPO},security_model=none,readonly=on",
            "-device", "virtio-9p-pci,fsdev=src,mount_tag=src",
            "-fsdev", f"local,id=run,path={self.share},security_model=none",
            "-device", "virtio-9p-pci,fsdev=run,mount_tag=run",
            "-netdev", f"user,id=mgmt,hostfwd=tcp:127.0.0.1:{self.port}-:{AGENT_PORT}",
            "-device", "virtio-net-pci,netdev=mgmt",
            # USB: enough USB 2 ports for the fixed devices and the ones tests plug from outside.
            "-device", "qemu-xhci,id=xhci,p2=8,p3=8",
            "-device", "usb-kbd,bus=xhci.0,port=1",
            "-device", "usb-tablet,bus=xhci.0,port=2",
            "-drive", f"file={stick},if=none,id=stick,format=raw",
            "-device", f"usb-storage,bus=xhci.0,port=3,drive=stick,serial={STICK_SERIAL}",
            "-chardev", "null,id=ser0",
            "-device", "usb-serial,bus=xhci.0,port=4,chardev=ser0,always-plugged=on",
            # The NIC to pass through, alone on its root port (so alone in its IOMMU group); its
            # network goes nowhere.
            "-device", "pcie-root-port,id=rp1,chassis=1,slot=1",
            "-netdev", "user,id=n1,restrict=on",
            "-device", "e1000e,bus=rp1,netdev=n1",
            "-qmp", f"unix:{self.qmp_socket},server=on,wait=off",
            "-serial", f"file:{self.serial_log}",
        ]

    def start(self) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.share.mkdir(exist_ok=True)
        # An old serial log would show the previous boot's ready line at once.
        for stale in (self.serial_log, self.qmp_socket):
            stale.unlink(missing_ok=True)
        stick = self.run_dir / "stick.img"
        with open(stick, "wb") as f:
            f.truncate(16 * 1024 * 1024)
        with open(self.qemu_log, "wb") as log:
            self.proc = subprocess.Popen(self.command(), stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, start_new_session=True)
        (self.run_dir / "qemu.pid").write_text(f"{self.proc.pid}\n")
        self.qmp = Qmp(self.qmp_socket)
        self.qmp.connect(time.monotonic() + 15)

    def wait_for_serial(self, pattern: str, timeout: float) -> re.Match:
        """The first serial line matching `pattern`; BootError on a deadline, a failure line or the
        death of QEMU."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while True:
            try:
                text = self.serial_log.read_bytes().decode("utf-8", "replace")
            except FileNotFoundError:
                text = ""
            for line in text.splitlines():
                if m := regex.search(line):
                    return m
                if FAILED in line:
                    raise BootError(f"L1 failed to boot: {line.strip()}")
            if self.proc is not None and self.proc.poll() is not None:
                raise BootError(f"QEMU exited with {self.proc.returncode}: {tail(self.qemu_log, 10)}")
            if time.monotonic() >= deadline:
                raise BootError(f"no serial line matching {pattern!r} within {timeout:g} s")
            time.sleep(0.2)

    def plug_usb(self, dev_id: str, driver: str, **props: str | int) -> None:
        """Plug a USB device into L1's xHCI controller, as a person plugs a stick in."""
        assert self.qmp is not None
        self.qmp.execute("device_add", driver=driver, id=dev_id, bus="xhci.0", **props)

    def pull_usb(self, dev_id: str) -> None:
        assert self.qmp is not None
        self.qmp.execute("device_del", id=dev_id)

    def diagnostics(self) -> str:
        """The ends of L1's serial console, of the agent's and of libvirtd's logs in L1."""
        parts = [(self.serial_log, 40), (self.share / "agent.log", 30), (self.share / "libvirtd.log", 30),
                 (self.qemu_log, 10)]
        return "\n".join(f"---- last lines of {p} ----\n{tail(p, n)}" for p, n in parts)

    def stop(self, timeout: float = 10.0) -> None:
        """Power L1 off and make sure its QEMU is gone: ask QEMU to quit (the root filesystem is a
        snapshot and the shares are written through, so nothing is lost), then kill it by its pid."""
        if self.qmp is not None:
            try:
                self.qmp.execute("quit")
            except (QmpError, OSError):
                pass
            self.qmp.close()
            self.qmp = None
        if self.proc is None:
            return
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout)
        self.proc = None
