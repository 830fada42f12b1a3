"""The shipped before_vm_start/50_usb_startup_policy hook, run by the runner over the shipped hooks
directory (so the shipped files' modes are checked too) and directly for the sysfs fallback."""
from __future__ import annotations

import json
import logging
import os
import subprocess
from pathlib import Path

import pytest
from lxml import etree

import vdsm_plugin.hooks
from vdsm_plugin.errors import AgentError
from vdsm_plugin.hooks import HookRunner

SHIPPED = Path(vdsm_plugin.hooks.__file__).resolve().parent
SCRIPT = SHIPPED / "before_vm_start" / "50_usb_startup_policy"
FIXTURES = Path(__file__).parent / "fixtures"
DOMAIN = (FIXTURES / "domain_usb.xml").read_text(encoding="utf-8")

OPTIONAL = {"vendorId": "136b", "productId": "0003", "bus": 2, "device": 3, "portPath": "2-1",
            "name": "STEC Zip disk"}
MANDATORY = {"vendorId": "0x0781", "productId": "0x5567", "bus": 1, "device": 4, "portPath": "1-3",
             "name": "SanDisk Cruzer Blade"}
OTHER = {"vendorId": "1d6b", "productId": "0002", "bus": 1, "device": 1, "portPath": "usb1",
         "name": "Linux Foundation 2.0 root hub"}


def run(inventory, xml: str = DOMAIN):
    runner = HookRunner(SHIPPED, timeout=20)
    extra = {"_hook_usb_inventory": json.dumps(inventory) if not isinstance(inventory, str) else inventory}
    return runner.run("before_vm_start", xml, env={"vmId": "vm-1"}, extra_files=extra)


def aliases(xml: str) -> list[str]:
    return etree.fromstring(xml.encode()).xpath("//hostdev/alias/@name")


def canonical(xml: str) -> str:
    return etree.canonicalize(xml, strip_text=True)


def with_policy(policy: str | None) -> str:
    attr = "" if policy is None else f" startupPolicy='{policy}'"
    return DOMAIN.replace("<source startupPolicy='mandatory'>", f"<source{attr}>")


def test_the_hook_is_shipped_executable_and_listed():
    assert SCRIPT.stat().st_mode & 0o777 == 0o755
    assert SCRIPT.read_text().startswith("#!/usr/bin/env python3\n")
    assert "50_usb_startup_policy" in HookRunner(SHIPPED).list_hooks()["before_vm_start"]


def test_all_devices_present_keeps_the_xml():
    result = run([OTHER, OPTIONAL, MANDATORY])
    assert result.failures == [] and result.ran == ["50_usb_startup_policy"]
    assert result.xml == DOMAIN  # untouched, byte for byte


def test_vendor_ids_are_normalised():
    inventory = [dict(OPTIONAL, vendorId="0x136B", productId="0X0003"),
                 dict(MANDATORY, vendorId="781", productId="5567")]
    assert run(inventory).xml == DOMAIN


def test_missing_optional_device_is_dropped(caplog):
    caplog.set_level(logging.INFO, logger="vdsm_plugin.hooks.runner")
    result = run([OTHER, MANDATORY])
    assert aliases(result.xml) == ["ua-man"]
    assert result.failures == []
    # The rest of the domain survives the round trip, namespaced metadata included.
    expected = etree.fromstring(DOMAIN.encode())
    gone = expected.xpath("//hostdev[alias/@name='ua-opt']")[0]
    gone.getparent().remove(gone)
    assert canonical(result.xml) == canonical(etree.tostring(expected, encoding="unicode"))
    assert "<plugboard:flavor>small</plugboard:flavor>" in result.xml
    messages = [r.getMessage() for r in caplog.records]
    assert any("USB device 136b:0003 (bus 2 device 3, alias ua-opt) is no longer on the host" in m
               and "optional" in m for m in messages)


def test_missing_optional_device_keeps_indentation():
    xml = run([MANDATORY]).xml
    assert "</hostdev>\n  </devices>" in xml
    xml = run([OPTIONAL], xml=DOMAIN.replace("'optional'", "'X'").replace("'mandatory'", "'optional'")
              .replace("'X'", "'mandatory'")).xml
    assert '<alias name="ua-nic"/>\n    </interface>\n    <hostdev' in xml
    assert "</hostdev>\n  </devices>" in xml


@pytest.mark.parametrize("policy", ["mandatory", "requisite", None])
def test_missing_mandatory_device_refuses_the_start(policy):
    with pytest.raises(AgentError) as e:
        run([OTHER, OPTIONAL], xml=with_policy(policy))
    err = e.value
    assert err.name == "hookRefused"
    assert err.detail == ("before_vm_start/50_usb_startup_policy: unable to start the VM: USB device "
                          "0781:5567 (bus 1 device 4, alias ua-man) is no longer on the host")
    assert err.data == {"script": "50_usb_startup_policy", "point": "before_vm_start"}


def test_device_moved_to_another_address_is_missing_when_the_xml_gives_the_address():
    moved = dict(MANDATORY, bus=3, device=9)
    with pytest.raises(AgentError) as e:
        run([OPTIONAL, moved])
    assert "0781:5567 (bus 1 device 4, alias ua-man)" in e.value.detail


def test_without_an_address_vendor_and_product_are_enough():
    xml = DOMAIN.replace("<address bus='1' device='4'/>", "")
    assert run([OPTIONAL, dict(MANDATORY, bus=3, device=9)], xml=xml).xml == xml


def test_address_only_hostdev_matches_on_the_address():
    xml = DOMAIN.replace("<vendor id='0x0781'/>", "").replace("<product id='0x5567'/>", "")
    assert run([OPTIONAL, dict(OTHER, bus=1, device=4)], xml=xml).xml == xml
    with pytest.raises(AgentError) as e:
        run([OPTIONAL, OTHER], xml=xml)
    assert "USB device ????:???? (bus 1 device 4, alias ua-man)" in e.value.detail


def test_empty_inventory_refuses_and_reports_every_missing_mandatory_device():
    xml = DOMAIN.replace("'optional'", "'mandatory'")
    with pytest.raises(AgentError) as e:
        run([], xml=xml)
    assert "136b:0003 (bus 2 device 3, alias ua-opt)" in e.value.detail
    assert "0781:5567 (bus 1 device 4, alias ua-man)" in e.value.detail


def test_domain_without_usb_hostdevs_is_untouched():
    xml = "<domain><devices><hostdev mode='subsystem' type='pci'><source/></hostdev></devices></domain>"
    assert run([], xml=xml).xml == xml


def test_unreadable_inventory_is_a_failure_and_the_start_goes_on():
    result = run("{not json")
    assert result.xml == DOMAIN
    assert result.failures[0]["exitCode"] == 1
    assert "cannot read the USB inventory" in result.failures[0]["stderr"]


# -- without `_hook_usb_inventory`: /sys/bus/usb ------------------------------------------------------

def fake_sysfs(root: Path, devices: dict[str, dict[str, str]]) -> Path:
    d = root / "usb" / "devices"
    d.mkdir(parents=True)
    for name, attrs in devices.items():
        (d / name).mkdir()
        for k, v in attrs.items():
            (d / name / k).write_text(v + "\n")
    (d / "2-1:1.0").mkdir()  # an interface: no idVendor
    (d / "2-1:1.0" / "bInterfaceClass").write_text("08\n")
    return root / "usb"


def run_directly(tmp_path: Path, xml: str, sysfs: Path) -> tuple[subprocess.CompletedProcess, str]:
    xml_file = tmp_path / "domain.xml"
    xml_file.write_text(xml, encoding="utf-8")
    env = {"PATH": HookRunner(SHIPPED).path, "_hook_domxml": str(xml_file), "_hook_usb_sysfs": str(sysfs)}
    proc = subprocess.run([str(SCRIPT)], env=env, capture_output=True, text=True, timeout=20)
    return proc, xml_file.read_text(encoding="utf-8")


def test_sysfs_with_both_devices(tmp_path):
    sysfs = fake_sysfs(tmp_path, {
        "2-1": {"idVendor": "136b", "idProduct": "0003", "busnum": "2", "devnum": "3"},
        "1-3": {"idVendor": "0781", "idProduct": "5567", "busnum": "1", "devnum": "4"},
        "usb1": {"idVendor": "1d6b", "idProduct": "0002", "busnum": "1", "devnum": "1"},
    })
    proc, xml = run_directly(tmp_path, DOMAIN, sysfs)
    assert proc.returncode == 0, proc.stderr
    assert xml == DOMAIN and proc.stderr == ""


def test_sysfs_without_the_optional_device(tmp_path):
    sysfs = fake_sysfs(tmp_path, {"1-3": {"idVendor": "0781", "idProduct": "5567", "busnum": "1",
                                          "devnum": "4"}})
    proc, xml = run_directly(tmp_path, DOMAIN, sysfs)
    assert proc.returncode == 0, proc.stderr
    assert aliases(xml) == ["ua-man"]
    assert len(proc.stderr.strip().splitlines()) == 1
    assert "136b:0003 (bus 2 device 3, alias ua-opt) is no longer on the host" in proc.stderr


def test_no_sys_bus_usb_means_no_usb_devices(tmp_path):
    proc, xml = run_directly(tmp_path, DOMAIN, tmp_path / "no-such-sysfs")
    assert proc.returncode == 2
    assert proc.stderr.strip() == ("unable to start the VM: USB device 0781:5567 (bus 1 device 4, alias "
                                   "ua-man) is no longer on the host")
    assert xml == DOMAIN
    proc, xml = run_directly(tmp_path, DOMAIN.replace("'mandatory'", "'optional'"), tmp_path / "none")
    assert proc.returncode == 0 and aliases(xml) == []


def test_custom_property_cannot_redirect_the_hook_to_a_fake_sysfs():
    with pytest.raises(AgentError) as e:
        HookRunner(SHIPPED).run("before_vm_start", DOMAIN, env={"_hook_usb_sysfs": "/tmp"})
    assert e.value.name == "invalidParams"


def test_missing_domxml_variable_is_a_failure(tmp_path):
    proc = subprocess.run([str(SCRIPT)], env={"PATH": HookRunner(SHIPPED).path}, capture_output=True,
                          text=True, timeout=20)
    assert proc.returncode == 1 and "_hook_domxml is not set" in proc.stderr
    assert os.path.exists(SCRIPT)
