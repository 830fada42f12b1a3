"""The integration tier: real libvirtd + QEMU (TCG) and the tiny test guest.

Everything under tests/integration is marked `integration`. A machine that is not set up makes
these tests fail, with the reason, rather than skip: scripts/setup-host.sh prepares it.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.integration.guest import SETUP_HINT, Guest, find_guest

HERE = Path(__file__).resolve().parent
DEFAULT_URI = "qemu:///system"
BRIDGE = "pbbr0"


def pytest_collection_modifyitems(config, items):
    for item in items:
        if HERE in Path(item.path).resolve().parents:
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def guest() -> Guest:
    """Kernel and initrd of the test guest (`guest.kernel`, `guest.initrd`, `guest.cmdline`)."""
    try:
        return find_guest()
    except FileNotFoundError as e:
        problem = str(e)
    pytest.fail(problem, pytrace=False)


@pytest.fixture(scope="session")
def libvirt_uri() -> str:
    """The libvirt URI to test against (PLUGBOARD_LIBVIRT_URI, default qemu:///system), checked to answer."""
    uri = os.environ.get("PLUGBOARD_LIBVIRT_URI") or DEFAULT_URI
    try:
        import libvirt
    except ImportError:
        libvirt = None
    if libvirt is None:
        pytest.fail("libvirt-python is not installed: pip install -e '.[libvirt]'", pytrace=False)
    libvirt.registerErrorHandler(lambda *_: None, None)
    problem = None
    try:
        conn = libvirt.open(uri)
        try:
            conn.getVersion()
        finally:
            conn.close()
    except libvirt.libvirtError as e:
        problem = e.get_error_message()
    if problem is not None:
        pytest.fail(f"libvirtd does not answer at {uri} ({problem}): {SETUP_HINT}", pytrace=False)
    return uri


@pytest.fixture(scope="session")
def bridge() -> str:
    """The Linux bridge NIC tests plug into; setup-host.sh creates it."""
    if not Path(f"/sys/class/net/{BRIDGE}/bridge").is_dir():
        pytest.fail(f"bridge {BRIDGE} does not exist: {SETUP_HINT}", pytrace=False)
    return BRIDGE
