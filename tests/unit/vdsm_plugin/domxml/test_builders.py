"""Each device builder branch against its golden file, and against libvirt's schema."""
from __future__ import annotations

import copy

import pytest
from lxml import etree

from tests.unit.vdsm_plugin.domxml.cases import DEVICES, VF, VM_ID
from tests.unit.vdsm_plugin.domxml.golden import assert_golden
from vdsm_plugin import domxml
from vdsm_plugin.errors import AgentError


@pytest.mark.parametrize("name", sorted(DEVICES))
def test_device_matches_golden(name):
    dev, resolved = DEVICES[name]
    assert_golden(f"{name}.xml", domxml.tostring(domxml.build_device(dev, resolved)))


@pytest.mark.parametrize("name", sorted(DEVICES))
def test_device_is_valid_for_libvirt(name, libvirt_rng):
    dev, resolved = DEVICES[name]
    dom = etree.fromstring(domxml.build_domain(VM_ID, {"name": "v", "memSize": 64, "vcpus": 1,
                                                       "machine": "q35", "graphics": "spice"}))
    dom.find("devices").append(domxml.build_device(dev, resolved))
    assert libvirt_rng.validate(dom), libvirt_rng.error_log


def test_builder_does_not_change_its_input():
    dev, resolved = DEVICES["hostdev_usb_resolved"]
    before = copy.deepcopy((dev, resolved))
    domxml.build_device(dev, resolved)
    assert (dev, resolved) == before


def test_resolved_usb_source_names_exactly_one_device():
    dev, resolved = DEVICES["hostdev_usb_resolved"]
    source = domxml.build_device(dev, resolved).find("source")
    assert source.find("vendor").get("id") == "0x046d"
    assert source.find("product").get("id") == "0xc52b"
    assert dict(source.find("address").attrib) == {"bus": "1", "device": "3"}


def test_promisc_is_not_xml():
    el = domxml.build_device(DEVICES["nic_bridge"][0])
    assert "pbbr0" == el.find("source").get("bridge")
    assert len(el.xpath("//*[contains(local-name(), 'promisc')] | //@*[contains(., 'promisc')]")) == 0


def test_nic_model_names():
    pv = domxml.build_device(DEVICES["nic_user"][0])
    e1000 = domxml.build_device({**DEVICES["nic_user"][0], "nicModel": "e1000"})
    assert pv.find("model").get("type") == "virtio"
    assert e1000.find("model").get("type") == "e1000"


def _nic(**kw):
    return {"type": "interface", "device": "bridge", "network": "br0", "alias": "ua-x",
            "macAddr": "52:54:00:00:00:01", "nicModel": "pv", **kw}


@pytest.mark.parametrize("dev, field", [
    (_nic(device="sriov", network=None), "specParams.hostdevAddress"),
    (_nic(device="sriov", specParams={"vlan": 3}), "specParams.hostdevAddress"),
    (_nic(network=None), "network"),
    (_nic(specParams={"portProfile": "p"}), "specParams.portProfile"),
    (_nic(specParams={"hostdevAddress": VF}), "specParams.hostdevAddress"),
    (_nic(device="tunnel"), "device"),
    ({"type": "hostdev", "device": "usb", "alias": "ua-u", "source": {"portPath": "1-1"}}, "source"),
    ({"type": "hostdev", "device": "usb", "alias": "ua-u", "source": {"nodeDev": "usb_1_3"}}, "source"),
    ({"type": "hostdev", "device": "usb", "alias": "ua-u", "source": {"vendor": "046d"}}, "source"),
    ({"type": "hostdev", "device": "pci", "alias": "ua-p", "source": {"nodeDev": "pci_0000_3b_00_0"}}, "source"),
    ({"type": "hostdev", "device": "pci", "alias": "ua-p", "source": VF, "startupPolicy": "optional"},
     "startupPolicy"),
    ({"type": "hostdev", "device": "scsi", "alias": "ua-s", "source": {}}, "device"),
    ({"type": "redirdev", "device": "tcp", "alias": "ua-r", "host": "h"}, "host"),
    ({"type": "controller", "device": "usb", "index": 1, "alias": "ua-c", "model": "ich9-ehci1", "ports": 4},
     "ports"),
    ({"type": "controller", "device": "sata", "index": 0, "alias": "ua-c", "model": "ahci"}, "device"),
    ({"type": "disk", "device": "disk", "alias": "ua-d"}, "type"),
])
def test_impossible_combinations_are_invalid_params(dev, field):
    with pytest.raises(AgentError) as e:
        domxml.build_device(dev)
    assert e.value.name == "invalidParams"
    assert e.value.data.get("field") == field


def test_sriov_nic_has_no_model_and_is_managed():
    el = domxml.build_device(DEVICES["nic_sriov"][0])
    assert el.get("managed") == "yes" and el.find("model") is None
    assert el.find("source/address").get("type") == "pci"
