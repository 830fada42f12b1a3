"""The PCI devices sub-tab and the PCI part of a host's inventory, in Chromium against the engine over
HTTP. This machine has no IOMMU and no PCI function to give away, so the engine here talks to an
in-memory agent (tests/unit/engine/fakehost.py) that answers as libvirt does on q35 -- a hot-plugged
function gets a pcie-root-port of its own, bus 1 and up -- with two functions of one card in one IOMMU
group (alias a1) and one off the whitelist (alias b1). The passthrough itself is proven on the test
host (tests/testhost); what is proven here is the UI: attach by alias and count, the attachments with
host and guest addresses, detach, and the canDo's refusals shown as disabled controls."""
from __future__ import annotations

import re
import threading
import uuid

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import DOCS, add_user, login
from tests.integration.agentproc import free_port
from tests.unit.engine.fakehost import FakeHost, FakeHosts
from tests.unit.engine.tokens import authenticated, issue_token

TAG = uuid.uuid4().hex[:6]
SPARE_PORTS = 4


def function(address, product_id, product, *, group, allowed=True, driver="igb"):
    return {"name": "pci_" + address.replace(":", "_").replace(".", "_"), "capability": "pci",
            "vendorId": "8086", "productId": product_id, "vendorName": "Intel Corporation", "productName": product,
            "pciAddress": address, "iommuGroup": group, "driver": driver, "parent": "computer", "allowed": allowed}


@pytest.fixture(scope="module")
def pci_engine(tmp_path_factory):
    """The engine (SQLite, the UI served by werkzeug's threaded server as `plugboard engine serve` does)
    with aliases a1 and b1 configured and host pcilab registered through the API."""
    from engine.app import create_app
    from engine.dao import db, pci_aliases
    from engine.pci_aliases import Alias
    from plugboard.engine_main import make_http_server

    state = tmp_path_factory.mktemp("pci-engine")
    url = f"sqlite:///{state}/engine.db"
    db.upgrade(url)
    engine_ = db.make_engine(url, sqlite_begin="immediate")
    sessions = db.make_sessions(engine_)
    with sessions.begin() as s:
        pci_aliases.replace_all(s, [Alias("a1", "8086", "10c9"), Alias("b1", "8086", "10fb")])
    lab = FakeHost("pcilab")
    lab.hostdevs = [
        function("0000:03:00.0", "10c9", "82576 Gigabit Network Connection", group=12),
        function("0000:03:00.1", "10c9", "82576 Gigabit Network Connection", group=12),
        function("0000:05:00.0", "10fb", "82599ES 10-Gigabit SFI/SFP+", group=14, allowed=False, driver="ixgbe"),
        function("0000:00:1c.0", "a110", "PCI Express Root Port", group=15, allowed=False, driver="pcieport"),
    ]
    app = create_app({"sessions": sessions, "hosts": FakeHosts(lab), "pcie_ports": SPARE_PORTS, "TESTING": True})
    add_user(sessions, "ada", "admin", "default")
    api = authenticated(app.test_client(), issue_token(sessions))
    host = api.post("/api/hosts", json={"name": "pcilab", "url": "http://127.0.0.1:9/jsonrpc"})
    assert host.status_code == 201, host.get_json()
    server = make_http_server(app, "127.0.0.1", free_port())
    thread = threading.Thread(target=server.serve_forever, name="ui-pci-test-server", daemon=True)
    thread.start()
    yield {"url": f"http://127.0.0.1:{server.server_port}", "api": api, "sessions": sessions, "lab": lab,
           "host": host.get_json()}
    server.shutdown()
    thread.join(5)
    engine_.dispose()


def running_vm(api, name, **boot):
    vm = api.post("/api/vms", json={"name": name, "os_type": "rhel_9x64", "machine": "q35",
                                    **({"boot": boot} if boot else {})})
    assert vm.status_code == 201, vm.get_json()
    started = api.post(f"/api/vms/{vm.get_json()['id']}/start", json={})
    assert started.status_code in (200, 202) and started.get_json()["status"] == "up", started.get_json()
    return vm.get_json()


@pytest.fixture(scope="module")
def page(browser, pci_engine):
    page = login(browser, pci_engine["url"], "ada")
    page.on("dialog", lambda d: d.accept())       # hx-confirm's "Detach PCI device ...?"
    yield page
    page.context.close()


def unlabelled(page):
    """The page's controls with no name a screen reader could read."""
    return page.evaluate("""() => [...document.querySelectorAll('input:not([type=hidden]), select, button, a[href]')]
        .filter(el => !(el.labels && el.labels.length) && !el.getAttribute('aria-label') && !el.textContent.trim())
        .map(el => el.outerHTML)""")


def pci_row(page, address):
    return page.locator(f"tr[data-pci='{address}']")


def test_attach_by_alias_and_count_shows_host_and_guest_addresses_and_detach_gives_the_device_back(
        page, pci_engine):
    vm = running_vm(pci_engine["api"], f"ui-pci-{TAG}")
    page.goto(f"{pci_engine['url']}/ui/vms/{vm['id']}")
    page.get_by_role("link", name="PCI devices").click()
    page.wait_for_url(f"**/ui/vms/{vm['id']}/pcidevs")
    expect(page.locator("#pci-ports-free")).to_have_text(f"Free PCIe slots: {SPARE_PORTS}")
    expect(page.get_by_role("table", name="PCI devices")).to_contain_text("No PCI devices.")

    page.get_by_role("button", name="Attach PCI devices").click()
    dialog = page.locator("#pb-dialog")
    expect(dialog).to_be_visible()
    a1 = dialog.locator("tr[data-alias='a1']")
    expect(a1).to_contain_text("8086:10c9")
    expect(a1.get_by_role("radio")).to_be_checked()                  # the first alias that can be had
    b1 = dialog.locator("tr[data-alias='b1']")                        # its one device is off the whitelist
    expect(b1.get_by_role("radio")).to_be_disabled()
    expect(b1).to_contain_text("Host pcilab has 0 free PCI device(s) for 1 × b1")
    assert unlabelled(page) == []
    dialog.get_by_label("a1", exact=True).check()
    dialog.get_by_label("Count").fill("2")
    page.screenshot(path=str(DOCS / "ui-pci-attach-dialog.png"))
    dialog.get_by_role("button", name="Attach").click()
    expect(dialog).to_be_hidden()
    expect(page.locator("#pb-alerts")).to_contain_text("2 PCI devices of alias a1 attached.")

    expect(page.locator("tr[data-pci]")).to_have_count(2)
    for address in ("0000:03:00.0", "0000:03:00.1"):
        row = pci_row(page, address)
        expect(row).to_have_attribute("data-status", "plugged")
        expect(row.locator("td[data-label='Host address']")).to_contain_text(address)
        expect(row.locator("td[data-label='Host device']")).to_contain_text("pci_" + re.sub(r"[:.]", "_", address))
        expect(row.locator("td[data-label='Guest address']")).to_have_text(re.compile(r"^\s*0000:0[12]:00\.0\s*$"))
        expect(row.locator("td[data-label='Alias']")).to_have_text(re.compile(r"^\s*a1\s*$"))
        expect(row).to_contain_text("82576 Gigabit Network Connection")
    expect(page.locator("#pci-ports-free")).to_have_text(f"Free PCIe slots: {SPARE_PORTS - 2}")
    guests = {r.locator("td[data-label='Guest address']").inner_text().strip()
              for r in page.locator("tr[data-pci]").all()}
    assert guests == {"0000:01:00.0", "0000:02:00.0"}                 # as the fake agent's libvirt reported them
    assert unlabelled(page) == []
    page.screenshot(path=str(DOCS / "ui-pci-devices.png"))

    # Both of a1's devices are taken (one IOMMU group): the dialog offers nothing it could attach.
    page.get_by_role("button", name="Attach PCI devices").click()
    expect(dialog.locator("tr[data-alias='a1']").get_by_role("radio")).to_be_disabled()
    expect(dialog.get_by_role("button", name="Attach")).to_be_disabled()
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()

    pci_row(page, "0000:03:00.0").get_by_role("button", name="Detach").click()
    expect(page.locator("#pb-alerts")).to_contain_text("PCI device detached.")
    expect(pci_row(page, "0000:03:00.0")).to_have_count(0)
    expect(page.locator("tr[data-pci]")).to_have_count(1)
    expect(page.locator("#pci-ports-free")).to_have_text(f"Free PCIe slots: {SPARE_PORTS - 1}")
    assert len(pci_engine["lab"].sent("VM.hotunplugHostdev")) == 1     # a live unplug, not just a row gone


def test_a_vm_with_no_free_pcie_slot_has_attach_disabled_with_the_reason(page, pci_engine):
    vm = running_vm(pci_engine["api"], f"ui-pci-full-{TAG}", pciePorts=0)
    page.goto(f"{pci_engine['url']}/ui/vms/{vm['id']}/pcidevs")
    expect(page.locator("#pci-ports-free")).to_have_text("Free PCIe slots: 0")
    attach = page.get_by_role("button", name="Attach PCI devices")
    expect(attach).to_be_disabled()
    expect(attach).to_have_attribute("data-reasons", "NO_FREE_PCIE_PORT")
    expect(attach).to_have_accessible_description(re.compile("free PCIe root port"))


def test_the_hosts_inventory_shows_its_pci_functions(page, pci_engine):
    page.goto(f"{pci_engine['url']}/ui/hosts")
    page.get_by_role("link", name="Devices of pcilab").click()
    table = page.get_by_role("table", name="PCI devices")
    expect(table.locator("tr[data-device]")).to_have_count(4)
    held = table.locator("tr[data-address='0000:03:00.1']")
    expect(held).to_have_attribute("data-status", "allocated")
    expect(held).to_have_attribute("data-iommu-group", "12")
    expect(held.locator("td[data-label='Driver']")).to_have_text("igb")
    expect(held.locator("td[data-label='Aliases']")).to_have_text("a1")
    expect(held.get_by_role("link", name=f"ui-pci-{TAG}")).to_be_visible()
    freed = table.locator("tr[data-address='0000:03:00.0']")
    expect(freed).to_have_attribute("data-status", "unavailable")     # its sibling is held: the group goes whole
    expect(freed.locator("td[data-label='Status']")).to_contain_text("IOMMU group 12 is held through 0000:03:00.1")
    barred = table.locator("tr[data-address='0000:05:00.0']")
    expect(barred).to_have_attribute("data-allowed", "false")
    expect(barred.locator("td[data-label='Status']")).to_contain_text("not on the host's whitelist")
    page.get_by_label("Kind").select_option("pci")
    page.get_by_role("button", name="Show").click()
    expect(page.get_by_role("table", name="USB devices")).to_have_count(0)
    expect(page.get_by_role("table", name="PCI devices").locator("tr[data-device]")).to_have_count(4)
    page.screenshot(path=str(DOCS / "ui-host-pci-devices.png"))
    held.get_by_role("link", name=f"ui-pci-{TAG}").click()
    page.wait_for_url("**/pcidevs")
    expect(pci_row(page, "0000:03:00.1")).to_have_attribute("data-status", "plugged")
