"""The browser tier: the web UI in Debian's headless Chromium (/usr/bin/chromium, never a browser that
Playwright downloads), driven by Playwright, against a real engine served over HTTP on loopback (its
monitor running) and a real agent on the real libvirtd with the tiny guest (tests/integration's
fixtures). The machine's network is closed: Chromium is told not to call home."""
from __future__ import annotations

import threading
from pathlib import Path

import pytest

from engine import credentials
from engine.dao import accounts
from tests.integration import conftest as integration
from tests.integration.agentproc import free_port
from tests.integration.engine import conftest as engine_tier

# The integration tier's fixtures: the guest, libvirt, the bridge, the agent process and the engine.
guest, libvirt_uri, bridge = integration.guest, integration.libvirt_uri, integration.bridge
agent_proc, engine_parts = engine_tier.agent_proc, engine_tier.engine_parts
api, host = engine_tier.api, engine_tier.host

HERE = Path(__file__).resolve().parent
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
DOCS = HERE.parents[1] / "docs"
PASSWORD = "correct horse battery staple"
SETUP_HINT = "run `make setup` (Debian's chromium, npm ci for the UI's assets)"


def pytest_collection_modifyitems(config, items):
    for item in items:
        if HERE in Path(item.path).resolve().parents:
            item.add_marker(pytest.mark.browser)
            item.add_marker(pytest.mark.integration)


def add_user(sessions, name: str, role: str, project: str) -> None:
    with sessions.begin() as s:
        if accounts.get_project(s, project) is None:
            accounts.add_project(s, project)
        user = accounts.get_user(s, name) or accounts.add_user(s, name, credentials.hash_password(PASSWORD))
        user.password_hash = credentials.hash_password(PASSWORD)
        accounts.set_membership(s, user, project, role)


@pytest.fixture(scope="module")
def engine_url(engine_parts, host):
    """The engine on a loopback port, werkzeug's threaded server as `plugboard engine serve` runs it,
    with its monitor (events finish unplugs the guest was slow to release)."""
    from plugboard.engine_main import make_http_server

    assets = HERE.parents[1] / "node_modules" / "htmx.org" / "dist" / "htmx.min.js"
    if not assets.is_file():
        pytest.fail(f"the UI's assets are not installed (no {assets}): {SETUP_HINT}", pytrace=False)
    add_user(engine_parts["sessions"], "ada", "admin", "default")
    add_user(engine_parts["sessions"], "mel", "member", "other")
    server = make_http_server(engine_parts["app"], "127.0.0.1", free_port())
    thread = threading.Thread(target=server.serve_forever, name="ui-test-server", daemon=True)
    thread.start()
    engine_parts["monitor"].start()
    yield f"http://127.0.0.1:{server.server_port}"
    engine_parts["monitor"].stop(timeout=5)
    server.shutdown()
    thread.join(5)


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.is_file():
        pytest.fail(f"{CHROMIUM} is missing: {SETUP_HINT}", pytrace=False)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


def login(browser, engine_url, user):
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    context.set_default_timeout(20_000)
    page = context.new_page()
    page.goto(f"{engine_url}/")
    page.get_by_label("User name").fill(user)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url("**/ui/vms")
    return page


@pytest.fixture(scope="module")
def admin_page(browser, engine_url):
    page = login(browser, engine_url, "ada")
    yield page
    page.context.close()
