"""The agent's unit tier needs no libvirt-python: importing the agent's modules, the fake hypervisor
and this tier's fixtures never imports libvirt (vdsm_plugin.virt imports it when the first real
connection is made). Checked in a fresh interpreter, since other tests may import libvirt here."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]

CHECK = """
import importlib, pkgutil, sys
import vdsm_plugin
names = sorted(m.name for m in pkgutil.walk_packages(vdsm_plugin.__path__, "vdsm_plugin."))
for name in names + ["tests.unit.vdsm_plugin.fakes", "tests.unit.vdsm_plugin.conftest"]:
    importlib.import_module(name)
    assert "libvirt" not in sys.modules, f"importing {name} imported libvirt"
print(" ".join(names))
"""


def test_the_agent_modules_do_not_import_libvirt():
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", CHECK], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    imported = done.stdout.split()
    assert {"vdsm_plugin.virt", "vdsm_plugin.agent", "vdsm_plugin.verbs.vm", "vdsm_plugin.server"} <= set(imported)


def test_the_libvirt_numbers_spelled_in_virt_are_libvirts():
    import pytest

    pytest.importorskip("libvirt")
    from vdsm_plugin import virt

    assert virt._libvirt().VIR_ERR_NO_DOMAIN == virt.ERR_NO_DOMAIN    # _libvirt() checks them all
