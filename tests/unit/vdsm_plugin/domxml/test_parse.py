"""The one hardened parser."""
from __future__ import annotations

import threading

import pytest

from vdsm_plugin import domxml
from vdsm_plugin.errors import AgentError


def test_parses_text_and_bytes_with_declaration():
    assert domxml.parse("<domain type='qemu'><name>a</name></domain>").tag == "domain"
    assert domxml.parse(b"<?xml version='1.0' encoding='UTF-8'?>\n<domain/>").tag == "domain"
    assert domxml.parse("<?xml version='1.0' encoding='UTF-8'?>\n<domain><name>\u00e9</name></domain>"
                        ).findtext("name") == "\u00e9"


def test_blank_text_is_dropped_so_output_is_pretty():
    dom = domxml.parse("<domain>\n   <devices>\n  <interface type='user'/>   </devices>\n</domain>")
    dom.find("devices").append(domxml.parse("<redirdev bus='usb' type='spicevmc'/>"))
    assert domxml.tostring(dom) == ("<domain>\n  <devices>\n    <interface type=\"user\"/>\n"
                                    "    <redirdev bus=\"usb\" type=\"spicevmc\"/>\n  </devices>\n</domain>\n")


@pytest.mark.parametrize("xml", [
    # billion laughs
    '<?xml version="1.0"?><!DOCTYPE d [<!ENTITY a "aaaa"><!ENTITY b "&a;&a;&a;&a;">]><domain>&b;</domain>',
    # external entity
    '<?xml version="1.0"?><!DOCTYPE d [<!ENTITY x SYSTEM "file:///etc/passwd">]><domain>&x;</domain>',
    # external DTD over the network
    '<?xml version="1.0"?><!DOCTYPE domain SYSTEM "http://192.0.2.1/d.dtd"><domain/>',
])
def test_doctypes_and_entities_are_refused(xml):
    with pytest.raises(AgentError) as e:
        domxml.parse(xml)
    assert "DOCTYPE" in str(e.value) or "malformed" in str(e.value)


@pytest.mark.parametrize("xml", ["", "<domain>", "not xml", b"\x00\x01"])
def test_malformed_xml_is_a_coded_error(xml):
    with pytest.raises(AgentError) as e:
        domxml.parse(xml)
    assert e.value.name == "unexpected"


def test_parser_is_safe_to_use_from_threads():
    errors: list[BaseException] = []
    text = "<domain>" + "<devices><interface type='user'><alias name='ua-a'/></interface></devices>" + "</domain>"

    def work():
        try:
            for _ in range(200):
                assert domxml.find_device(domxml.parse(text), "ua-a") is not None
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
