"""`plugboard up`: agent and engine as background processes on this machine, this machine registered
as a host, and a demo VM (the tiny guest of scripts/build-guest.sh) running with one NIC. The engine
drives the agent over mutual TLS with the certificates `plugboard pki init` makes in the state dir
(once). Safe to run again: what is already up is reused."""
from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import requests

from plugboard import accounts, pki

ROOT = Path(__file__).resolve().parents[1]
DEMO_VM, DEMO_NIC, BRIDGE = "demo", "nic1", "pbbr0"
TOKEN_FILE = "admin.token"          # in the state dir, mode 0600: the demo administrator's API token
# Sent on every call to the engine: the demo administrator's token, once up() has it.
_HEADERS: dict[str, str] = {}


class UpError(SystemExit):
    pass


def _alive(pidfile: Path) -> bool:
    try:
        os.kill(int(pidfile.read_text()), 0)
        return True
    except (OSError, ValueError):
        return False


def _spawn(name: str, argv: list[str], state: Path, env: dict[str, str] | None = None) -> None:
    pidfile = state / f"{name}.pid"
    if _alive(pidfile):
        return
    log = open(state / f"{name}.log", "ab")
    proc = subprocess.Popen([sys.executable, "-m", "plugboard.cli", *argv], stdout=log, stderr=log,
                            stdin=subprocess.DEVNULL, cwd=ROOT, start_new_session=True,
                            env={**os.environ, **(env or {})})
    pidfile.write_text(str(proc.pid))


def _wait(what: str, probe, log: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if probe():
                return
        except requests.RequestException:
            pass
        time.sleep(0.3)
    tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
    raise UpError(f"{what} did not come up within {timeout:.0f} s; last lines of {log}:\n{tail}")


def _api(method: str, url: str, **kw: Any) -> Any:
    r = requests.request(method, url, timeout=60, headers=_HEADERS, **kw)
    if r.status_code >= 400:
        raise UpError(f"{method} {url} -> {r.status_code}: {r.text}")
    return r.json() if r.content else None


def _agent_config(state: Path, guest: Path, port: int, certs: pki.Files) -> Path:
    """The demo agent's settings: mutual TLS with the certificates of `pki init`, the guest's
    directory for kernels, the state dir for serial logs."""
    path = state / "agent.toml"
    path.write_text(f"""[agent]
listen = "127.0.0.1:{port}"
state_dir = "{state / 'agent'}"
image_dirs = ["{guest}"]
log_dir = "{state}"

[tls]
cert = "{certs.agent_cert}"
key = "{certs.agent_key}"
ca = "{certs.ca_cert}"
""", encoding="utf-8")
    return path


def up(args: argparse.Namespace) -> int:
    state = (ROOT / args.state_dir).resolve() if not args.state_dir.is_absolute() else args.state_dir
    state.mkdir(parents=True, exist_ok=True)
    guest = Path(os.environ.get("PLUGBOARD_GUEST_DIR", ROOT / "var" / "guest"))
    if not (guest / "vmlinuz").exists():
        raise UpError(f"no guest kernel in {guest}: run scripts/setup-host.sh (make setup) first")
    agent_url = f"https://127.0.0.1:{args.agent_port}/jsonrpc"
    api = f"http://127.0.0.1:{args.engine_port}/api"

    certs = pki.init(state / "pki")   # made once; kept on later runs
    _spawn("agent", ["agent", "serve", "--config", str(_agent_config(state, guest, args.agent_port, certs))], state)
    client = (str(certs.engine_cert), str(certs.engine_key))
    _wait("the agent", lambda: requests.post(agent_url, json={"jsonrpc": "2.0", "method": "Host.ping", "id": 1},
                                             timeout=2, verify=str(certs.ca_cert), cert=client).ok,
          state / "agent.log")
    db_url = f"sqlite:///{state / 'engine' / 'engine.db'}"
    _spawn("engine", ["engine", "serve", "--listen", f"127.0.0.1:{args.engine_port}"], state,
           {"PLUGBOARD_STATE_DIR": str(state / "engine"),
            "PLUGBOARD_DB_URL": db_url,
            "PLUGBOARD_TLS_CA": str(certs.ca_cert), "PLUGBOARD_TLS_CERT": str(certs.engine_cert),
            "PLUGBOARD_TLS_KEY": str(certs.engine_key)})
    _wait("the engine", lambda: requests.get(f"{api}/openapi.json", timeout=2).ok, state / "engine.log")
    # The engine has migrated the database: the demo administrator and its token (kept, or made again).
    token = accounts.demo_token(db_url, state / TOKEN_FILE)
    _HEADERS["Authorization"] = f"Bearer {token}"

    hosts = _api("GET", f"{api}/hosts")
    # A state dir from before TLS has this host registered with its http:// URL: add the https one.
    host = next((h for h in hosts if h["url"] == agent_url), None) or _api(
        "POST", f"{api}/hosts", json={"name": "localhost" if all(h["name"] != "localhost" for h in hosts)
                                      else "localhost-tls", "url": agent_url})
    vms = {v["name"]: v for v in _api("GET", f"{api}/vms")}
    vm = vms.get(DEMO_VM)
    if vm is None:
        vm = _api("POST", f"{api}/vms", json={
            "name": DEMO_VM, "project_id": accounts.DEMO_PROJECT, "os_type": "debian_12", "memory_mb": 256,
            "vcpus": 1, "machine": "pc", "graphics": "spice",
            "boot": {"kernel": str(guest / "vmlinuz"), "initrd": str(guest / "initrd.gz"),
                     "cmdline": "console=ttyS0 quiet panic=-1 rdinit=/init",
                     "serialLog": str(state / "demo-console.log")}})
        # cold plug while the VM is down: an EHCI with its three UHCI companions (oVirt's layout)
        _api("POST", f"{api}/vms/{vm['id']}/controllers", json={"type": "usb", "model": "ich9-ehci1",
                                                                   "companions": True})
    nics = {n["name"]: n for n in _api("GET", f"{api}/vms/{vm['id']}/nics")}
    nic = nics.get(DEMO_NIC) or _api("POST", f"{api}/vms/{vm['id']}/nics",
                                     json={"name": DEMO_NIC, "network": BRIDGE, "active": True})
    if vm["status"] != "up":
        vm = _api("POST", f"{api}/vms/{vm['id']}/start", json={"host_id": host["id"]})

    nic_url = f"{api}/vms/{vm['id']}/nics/{nic['id']}"
    auth = '-H "Authorization: Bearer $TOKEN"'
    print(f"""
Plugboard is up.
  engine   {api}   (OpenAPI: {api}/openapi.json)
  agent    {agent_url}
  logs     {state}/engine.log, {state}/agent.log, guest console {state}/demo-console.log
  demo VM  {vm['name']} ({vm['id']}), status {vm['status']}, NIC {nic['name']} {nic['mac']} on {BRIDGE}

Every request needs a token. The administrator "{accounts.DEMO_ADMIN}" has one, kept in {state / TOKEN_FILE}:
  export TOKEN=$(cat {state / TOKEN_FILE})
Another one (printed once; revoke with `plugboard token revoke ID`), or a member of a project:
  .venv/bin/plugboard token create --user {accounts.DEMO_ADMIN} --db-url {db_url}
  .venv/bin/plugboard user add alice --role member --project {accounts.DEMO_PROJECT} --db-url {db_url}

Give the guest ~10 s to boot, then try:
  curl -s {auth} {nic_url}
  curl -s {auth} -X POST {nic_url}/deactivate
  curl -s {auth} -X POST {nic_url}/activate
  curl -s {auth} '{api}/events?vm_id={vm['id']}'
  grep PB-NETS {state}/demo-console.log | tail -1     # the NICs the guest sees
  grep PB-USBHC {state}/demo-console.log | tail -1    # its USB controllers (EHCI + 3 UHCI companions)

USB controllers are cold plug only (try adding one now: 409, stop the VM first); SPICE USB
redirection plugs live:
  curl -s {auth} {api}/vms/{vm['id']}/controllers
  curl -s {auth} -X POST -H 'Content-Type: application/json' -d '{{"model": "xhci"}}' {api}/vms/{vm['id']}/controllers
  curl -s {auth} -X POST -H 'Content-Type: application/json' -d '{{"type": "spicevmc"}}' {api}/vms/{vm['id']}/redirdevs

The same VM through the Nova-compatible facade (tenant = the VM's project, "{vm['project_id']}"; the token in
X-Auth-Token, as Keystone's travel):
  curl -s -H "X-Auth-Token: $TOKEN" http://127.0.0.1:{args.engine_port}/v2.1/{vm['project_id']}/servers/{vm['id']}

Stop everything with: make stop
""")
    return 0


def down(state: Path, engine_port: int = 8080) -> None:
    """Stop the demo VM through the engine (so its database agrees), then the engine and the agent."""
    api = f"http://127.0.0.1:{engine_port}/api"
    try:
        headers = {"Authorization": f"Bearer {(state / TOKEN_FILE).read_text(encoding='ascii').strip()}"}
        for vm in requests.get(f"{api}/vms", headers=headers, timeout=5).json():
            if vm["name"] == DEMO_VM and vm["status"] != "down":
                requests.post(f"{api}/vms/{vm['id']}/stop", json={}, headers=headers, timeout=60)
    except (OSError, requests.RequestException, ValueError, KeyError, TypeError):
        pass  # the engine is not running: nothing to tell it
    for name in ("engine", "agent"):
        pidfile = state / f"{name}.pid"
        if _alive(pidfile):
            _stop_group(int(pidfile.read_text()))
        pidfile.unlink(missing_ok=True)


#: How long `down` waits for a process group to exit after SIGTERM (the engine finishes the requests
#: it has, the agent its hooks) before it kills what is left.
STOP_WAIT = 60.0


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
        return True
    except OSError:
        return False


def _stop_group(pgid: int, wait: float = STOP_WAIT) -> None:
    """SIGTERM to a process group, and return once it has exited (SIGKILL after `wait` seconds): when
    `down` returns, the ports and the state dir are free for the next `up`."""
    os.killpg(pgid, signal.SIGTERM)
    deadline = time.monotonic() + wait
    while _group_alive(pgid):
        if time.monotonic() >= deadline:
            os.killpg(pgid, signal.SIGKILL)
            return
        time.sleep(0.05)
