"""The test-host tier: the agent on a real hypervisor host with real USB devices and an IOMMU, made
of QEMU (see machine.py). One L1 per session; everything under tests/testhost is marked `testhost`.

A machine that cannot run it (no debootstrap, not enough memory, the image does not build, L1 does
not boot) fails these tests with the reason instead of skipping them. Any failure prints the ends of
L1's serial console, the agent's and libvirtd's logs.
"""
from __future__ import annotations

import os
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from engine import agent_codes
from engine.config import TlsSettings
from engine.errors import HostCallFailed
from engine.jsonrpc_client import JsonRpcHostClient
from tests.testhost.machine import REPO, BootError, TestHost, tail
from tests.testhost.shell import L1Shell

HERE = Path(__file__).resolve().parent
VAR = REPO / "var" / "testhost"
IMAGE_DIR = Path(os.environ.get("PLUGBOARD_TESTHOST_DIR") or VAR / "image")
RUN_DIR = VAR / "run"
BUILD_LOG = REPO / "var" / "log" / "testhost-build.log"
L1_RUN = "/opt/plugboard/run"           # the run directory as L1 sees it
IMAGES = "/var/lib/plugboard/images"    # L2's kernel and initramfs, in the image
BUILD_TIMEOUT = 420
BOOT_TIMEOUT = 150
AGENT_TIMEOUT = 60
L2_BOOT_TIMEOUT = 420                   # from VM.create: TCG inside TCG, on a busy machine
BOOTED = {"l2_booted", "engine_vm_booted"}  # fixtures that wait for a guest to boot
NIC_IN_L1 = {"test_inventory", "test_stopped_vm"}   # modules that need the e1000e unassigned
ENGINE_PCI = "test_engine_pci"
MEMORY_MARGIN_MIB = 1536                # what L0's own QEMU and the rest of the suite need beside L1

# What the agent in L1 may pass through: the USB devices the tests attach (the 0627:0001 pair too,
# so that the ambiguity, not the whitelist, refuses it) but not the USB serial adapter; the e1000e.
USB_SERIAL = ("0403", "6001")
STICK = ("46f4", "0001")
TWIN = ("0627", "0001")
CCID = ("08e6", "4433")       # usb-ccid: what the tests plug from outside, one of a kind
E1000E = ("8086", "10d3")
AGENT_TOML = f"""[agent]
listen = "0.0.0.0:54321"
libvirt_uri = "qemu:///system"
state_dir = "/var/lib/plugboard/agent"
unplug_timeout = 30
image_dirs = ["{IMAGES}"]
log_dir = "{L1_RUN}/vms"

[tls]
cert = "{L1_RUN}/pki/agent.pem"
key = "{L1_RUN}/pki/agent.key"
ca = "{L1_RUN}/pki/ca.pem"

[whitelist]
usb_white_list_switch = "on"
usb_passthrough_whitelist = [
    {{vendor = "0x{STICK[0]}", product = "0x{STICK[1]}"}},
    {{vendor = "0x{TWIN[0]}", product = "0x{TWIN[1]}"}},
    {{vendor = "0x{CCID[0]}", product = "0x{CCID[1]}"}},
]
pci_passthrough_whitelist = [{{vendor_id = "{E1000E[0]}", product_id = "{E1000E[1]}"}}]
"""

_running: TestHost | None = None


def pytest_collection_modifyitems(config, items):
    ours = [item for item in items if HERE in Path(item.path).resolve().parents]
    for item in ours:
        item.add_marker(pytest.mark.testhost)
    # Tests that need a booted guest (L2's, the engine's PCI VM's) run last: it boots (minutes, TCG
    # inside TCG) while the tests that do not need it run. The engine's PCI VM takes L1's e1000e when
    # it starts, so the modules that need the NIC in L1's own driver come before it, and the rest
    # after it, while it boots. sort() is stable: the rest keep their order.
    # Other directories keep their places around this one.
    start = next((i for i, item in enumerate(items) if item in ours), len(items))
    place = {id(item): i for i, item in enumerate(items)}

    def order(item: pytest.Item) -> tuple[bool, int, int]:
        if item not in ours:
            return False, -1 if place[id(item)] < start else 3, 0
        module = Path(item.path).stem
        phase = 0 if module in NIC_IN_L1 else 1 if module == ENGINE_PCI else 2
        return bool(BOOTED & set(getattr(item, "fixturenames", ()))), phase, 0
    items.sort(key=order)
    # The first test also waits for the image to build and L1 to boot: its own deadlines bound
    # those, so its timeout makes room for them.
    first = next((item for item in items if item in ours), None)
    if first is not None:
        first.add_marker(pytest.mark.timeout(BUILD_TIMEOUT + BOOT_TIMEOUT + AGENT_TIMEOUT + 120))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.failed and _running is not None and HERE in Path(item.path).resolve().parents:
        report.sections.append(("test host", _running.diagnostics()))


def _memory_available_mib() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) // 1024
    return 0


@pytest.fixture(scope="session")
def testhost_image() -> Path:
    """The L1 image, built (or found up to date) by build-image.sh."""
    BUILD_LOG.parent.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    with open(BUILD_LOG, "wb") as log:
        try:
            rc = subprocess.run(["bash", str(HERE / "build-image.sh")], stdout=log, stderr=subprocess.STDOUT,
                                timeout=BUILD_TIMEOUT, env={**os.environ, "PLUGBOARD_TESTHOST_DIR": str(IMAGE_DIR)}
                                ).returncode
        except subprocess.TimeoutExpired:
            rc = "timeout"
    if rc != 0:
        pytest.fail(f"the test host image did not build ({rc}); {BUILD_LOG} ends with:\n{tail(BUILD_LOG, 30)}",
                    pytrace=False)
    print(f"\ntesthost: image ready in {time.monotonic() - start:.1f} s: {tail(BUILD_LOG, 1)}")
    return IMAGE_DIR


def _write_run_dir(host: TestHost) -> Path:
    """agent.toml and a CA, the engine's client and the agent's server certificate for L1, whose
    agent L0 reaches at 127.0.0.1 through QEMU's port forwarding."""
    from plugboard import pki
    host.share.mkdir(parents=True, exist_ok=True)
    for name in ("agent.log", "libvirtd.log"):
        (host.share / name).unlink(missing_ok=True)
    (host.share / "vms").mkdir(exist_ok=True)
    pki.init(host.share / "pki", ["127.0.0.1", "localhost"], force=True)
    (host.share / "agent.toml").write_text(AGENT_TOML)
    return host.share / "pki"


@pytest.fixture(scope="session")
def testhost(testhost_image: Path) -> Iterator[TestHost]:
    """L1, booted, with its agent answering; always powered off at the end of the session."""
    global _running
    free = _memory_available_mib()
    host = TestHost(image_dir=testhost_image, run_dir=RUN_DIR)
    if free < host.memory_mib + MEMORY_MARGIN_MIB:
        pytest.fail(f"the test host needs {host.memory_mib + MEMORY_MARGIN_MIB} MiB of free memory, this machine "
                    f"has {free} MiB available", pytrace=False)
    pki_dir = _write_run_dir(host)
    host.tls = TlsSettings(ca_file=pki_dir / "ca.pem", cert_file=pki_dir / "engine.pem",
                           key_file=pki_dir / "engine.key")
    start = time.monotonic()
    try:
        host.start()
        _running = host
        host.wait_for_serial("PLUGBOARD-L1-READY", BOOT_TIMEOUT)
        booted = time.monotonic() - start
        _wait_for_agent(host)
        print(f"\ntesthost: L1 ready in {booted:.1f} s, agent answering in {time.monotonic() - start:.1f} s")
        yield host
    except BootError as e:
        pytest.fail(f"{e}\n{host.diagnostics()}", pytrace=False)
    finally:
        _running = None
        host.stop()


def _wait_for_agent(host: TestHost) -> None:
    deadline = time.monotonic() + AGENT_TIMEOUT
    with JsonRpcHostClient("testhost", host.url, timeout=5, connect_timeout=3, tls=host.tls) as client:
        while True:
            try:
                client.call("Host.ping")
                return
            except Exception as e:  # noqa: BLE001 - any failure means "not yet", until the deadline
                if time.monotonic() >= deadline:
                    raise BootError(f"the agent in L1 does not answer at {host.url}: {e}") from None
                time.sleep(0.5)


@pytest.fixture(scope="session")
def agent(testhost: TestHost) -> Iterator[JsonRpcHostClient]:
    """The engine's own JSON-RPC client, with mutual TLS, on the agent in L1."""
    with JsonRpcHostClient("testhost", testhost.url, timeout=90, tls=testhost.tls) as client:
        yield client


@pytest.fixture(scope="session")
def l1(testhost: TestHost) -> L1Shell:
    """Commands run in L1 (through the shared run directory), to look at what the agent cannot show:
    drivers in sysfs, libvirt's live XML."""
    return L1Shell(testhost.share / "cmd")


def code(name: str) -> int:
    """An agent error's code, from schema/errors.yaml."""
    return agent_codes.code(name)


def refused(excinfo: pytest.ExceptionInfo[HostCallFailed], name: str) -> None:
    err = excinfo.value
    assert err.host_code == code(name), f"expected {name} ({code(name)}), got {err.host_code}: {err.host_message}"


# -- host devices --------------------------------------------------------------------------------------
def inventory(agent: JsonRpcHostClient) -> list[dict[str, Any]]:
    return agent.call("Host.hostdevListByCaps", {"caps": ["usb_device", "pci"]})["devices"]


def find_devices(agent: JsonRpcHostClient, ids: tuple[str, str]) -> list[dict[str, Any]]:
    return [d for d in inventory(agent) if (d["vendorId"], d["productId"]) == ids]


def the_device(agent: JsonRpcHostClient, ids: tuple[str, str]) -> dict[str, Any]:
    found = find_devices(agent, ids)
    assert len(found) == 1, f"expected one {ids[0]}:{ids[1]} on L1, found {found}"
    return found[0]


def by_name(agent: JsonRpcHostClient, name: str) -> dict[str, Any]:
    found = [d for d in inventory(agent) if d["name"] == name]
    assert found, f"{name} is not on L1"
    return found[0]


def record(name: str, text: str) -> None:
    """Keep what a run showed (live XML, journal lines) in var/testhost/run/report/, for people."""
    path = RUN_DIR / "report" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def wait_until(check: Callable[[], Any], timeout: float, what: str, interval: float = 0.3) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"{what}: not within {timeout:g} s")
        time.sleep(interval)


def wait_event(agent: JsonRpcHostClient, after: int, match: Callable[[dict[str, Any]], bool],
               timeout: float, what: str) -> dict[str, Any]:
    """The first journal event after `after` that `match`es, long-polling Host.getEvents."""
    deadline = time.monotonic() + timeout
    seen: list[dict[str, Any]] = []
    while (left := deadline - time.monotonic()) > 0:
        answer = agent.call("Host.getEvents", {"after": after, "timeout": min(left, 5)})
        for event in answer["events"]:
            seen.append(event)
            if match(event):
                return event
            after = max(after, event["seq"])
    raise AssertionError(f"no {what} event within {timeout:g} s; events seen: {seen}")


def journal_last(agent: JsonRpcHostClient) -> int:
    return agent.call("Host.getEvents", {"timeout": 0, "limit": 1})["last"]


# -- L2 ------------------------------------------------------------------------------------------------
def vm_params(name: str, *, boot: bool = True, devices: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """A q35 L2. With `boot`, the tiny guest (answers ACPI hot-unplug, prints its PCI devices on its
    serial console); without, no kernel at all: the firmware finds nothing to boot and idles, which
    is all a VM that only holds devices needs (and it takes no CPU from the others)."""
    params: dict[str, Any] = {"name": name, "memSize": 256 if boot else 64, "vcpus": 1, "machine": "q35",
                              "serialLog": f"{L1_RUN}/vms/{name}.log", "devices": devices or []}
    if boot:
        params.update(kernel=f"{IMAGES}/vmlinux", initrd=f"{IMAGES}/l2-initrd.gz",
                      cmdline="console=ttyS0 quiet panic=-1 rdinit=/init")
    return params


class L2:
    def __init__(self, host: TestHost, vm_id: str, name: str) -> None:
        self.id = vm_id
        self.name = name
        self.serial_log = host.share / "vms" / f"{name}.log"
        self.started = time.monotonic()


@pytest.fixture(scope="session")
def l2(testhost: TestHost, agent: JsonRpcHostClient) -> Iterator[L2]:
    """The running L2 that receives the devices; its guest boots in the background."""
    vm = L2(testhost, str(uuid.uuid4()), "l2")
    agent.call("VM.create", {"vmId": vm.id, "params": vm_params(vm.name)})
    yield vm
    agent.call("VM.destroy", {"vmId": vm.id})


@pytest.fixture(scope="session")
def l2_booted(l2: L2) -> L2:
    """L2 with its guest up: a PCI device plugged before that would never be released."""
    from tests.integration.guest import wait_for_serial
    wait_for_serial(l2.serial_log, "PLUGBOARD-L2-READY", timeout=L2_BOOT_TIMEOUT)
    print(f"\ntesthost: L2 guest ready {time.monotonic() - l2.started:.1f} s after VM.create")
    return l2


@pytest.fixture
def idle_vm(agent: JsonRpcHostClient) -> Iterator[Callable[..., str]]:
    """Makes running VMs without a guest (VM.create) or stopped ones (`define=True`); all destroyed after."""
    made: list[str] = []

    def make(name: str, *, define: bool = False, devices: list[dict[str, Any]] | None = None) -> str:
        vm_id = str(uuid.uuid4())
        agent.call("VM.define" if define else "VM.create",
                   {"vmId": vm_id, "params": vm_params(name, boot=False, devices=devices)})
        made.append(vm_id)
        return vm_id

    yield make
    for vm_id in made:
        try:
            agent.call("VM.destroy", {"vmId": vm_id})
        except HostCallFailed:
            pass
