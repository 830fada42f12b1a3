"""Faults in the middle of a plug or unplug, on the real stack: the engine (its REST API, database and a
running monitor), a real agent process, libvirtd and a booted guest. Each fault must converge -- the row
equal to the live domain, what the user asked not dropped, the outcome audited -- within 60 s of the
host being back. Each case's time to converge is printed at the end of the module.

The agent is killed (kill -9) from inside an operation by hook scripts (vdsm_plugin/hooks): one per
point around the NIC's attach and detach, each armed by a file this module writes and disarmed as it
fires. libvirtd is restarted the same way."""
from __future__ import annotations

import stat
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from tests.integration.agentproc import AgentProcess
from tests.integration.engine.conftest import SUMMARY
from tests.integration.engine.rest import add_nic, die_after_host_call, live_devices, new_vm, ok
from tests.integration.guest import wait_for_serial

CONVERGE_WITHIN = 60.0
POINTS = ("before_nic_hotplug", "after_nic_hotplug", "before_nic_hotunplug", "after_nic_hotunplug")
HOOK = """#!/bin/sh
# Fires once per arming: kill the agent that runs this hook, or restart libvirtd.
flag={arm}/{point}
[ -e "$flag" ] || exit 0
action=$(cat "$flag")
rm -f "$flag"
case "$action" in
kill-agent) kill -9 "$PPID" ;;
restart-libvirtd)
    pid=$(pidof libvirtd)
    kill "$pid"
    while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
    libvirtd -d ;;
esac
exit 0
"""

TIMINGS: list[tuple[str, float, str]] = []


@pytest.fixture(scope="module")
def arm_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("arm")


@pytest.fixture(scope="module")
def agent_proc(tmp_path_factory, libvirt_uri, arm_dir):
    """The agent, with the fault hooks at the four points around attach and detach."""
    hooks = tmp_path_factory.mktemp("hooks")
    for point in POINTS:
        (hooks / point).mkdir()
        script = hooks / point / "50_fault"
        script.write_text(HOOK.format(arm=arm_dir, point=point))
        script.chmod(script.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    agent = AgentProcess(tmp_path_factory.mktemp("agent"), libvirt_uri, hooks_dir=hooks)
    agent.start()
    yield agent
    agent.stop()


@pytest.fixture(scope="module")
def monitor(engine_parts, host):
    """The engine's monitor, running: long polls of 2 s, an unreachable host retried every 0.5 s,
    a guest given 15 s to release a device."""
    from engine.monitor import Monitor
    mon = Monitor(engine_parts["sessions"], engine_parts["hosts"], poll_timeout=2, reconcile_interval=15,
                  stale_after=15, in_flight_grace=30, retry_delay=0.5)
    mon.start()
    yield mon
    mon.stop(timeout=10)


@pytest.fixture(scope="module", autouse=True)
def report():
    yield
    if TIMINGS:
        SUMMARY["faults: time from the host being back to the row equal to the live domain"] = [
            f"{'fault':<44} {'converged in':>12}   row and live domain",
            *(f"{name:<44} {seconds:>10.1f} s   {outcome}" for name, seconds, outcome in TIMINGS)]


@pytest.fixture(scope="module")
def running(api, host, guest, tmp_path_factory, agent_proc, monitor):
    serial = tmp_path_factory.mktemp("guest") / "console.log"
    vm = new_vm(api, f"faults-{uuid.uuid4().hex[:6]}", guest, serial)
    vm = ok(api.post(f"/api/vms/{vm['id']}/start", json={}))
    wait_for_serial(serial, "PLUGBOARD-GUEST-READY", timeout=120)
    yield {"vm": vm, "serial": serial}
    api.post(f"/api/vms/{vm['id']}/stop", json={})


def arm(arm_dir: Path, point: str, action: str = "kill-agent") -> None:
    (arm_dir / point).write_text(action)


def nic_url(vm, nic) -> str:
    return f"/api/vms/{vm['id']}/nics/{nic['id']}"


def converged(api, agent_proc, vm, nic) -> dict | None:
    """The NIC's row when it is settled and equal to the live domain (present with the same address, or
    absent), else None."""
    row = ok(api.get(nic_url(vm, nic)))
    if row["plug_state"] != "stable":
        return None
    try:
        live = {d["alias"]: d for d in live_devices(agent_proc, vm["id"])}
    except Exception:       # noqa: BLE001 - the agent or libvirtd is not back yet
        return None
    if row["plugged"] != (nic["alias"] in live):
        return None
    if row["plugged"] and row["address"] != live[nic["alias"]].get("address"):
        return None
    return row


def wait_converged(api, agent_proc, vm, nic, since: float, name: str) -> dict:
    while True:
        row = converged(api, agent_proc, vm, nic)
        took = time.monotonic() - since
        if row is not None:
            TIMINGS.append((name, took, f"plugged={row['plugged']}, equal"))
            return row
        if took > CONVERGE_WITHIN:
            TIMINGS.append((name, took, "NOT CONVERGED"))
            raise AssertionError(f"{name}: not converged within {CONVERGE_WITHIN:g} s: {ok(api.get(nic_url(vm, nic)))}")
        time.sleep(0.25)


def codes(engine_parts, nic) -> list[str]:
    """The audit codes of the NIC's events, oldest first."""
    from engine.dao import audit
    with engine_parts["sessions"]() as s:
        return [e.code for e in audit.list(s, device_id=nic["id"], limit=1000)]


def killed_and_restarted(agent_proc) -> float:
    """Waits for the agent the hook killed, starts it again; returns when it is back. The files the
    killed hook run was handed are cleared by the new agent."""
    assert agent_proc.proc is not None
    agent_proc.proc.wait(30)
    assert agent_proc.proc.returncode == -9
    scratch = agent_proc.state_dir / "hook-files"
    assert any(p.name.startswith("plugboard-hook-domxml-") for p in scratch.iterdir())
    agent_proc.start()
    assert list(scratch.iterdir()) == []
    return time.monotonic()


@pytest.mark.parametrize("point", ["before_nic_hotplug", "after_nic_hotplug"])
def test_agent_killed_during_a_plug(point, running, api, engine_parts, agent_proc, arm_dir):
    vm = running["vm"]
    nic = add_nic(api, vm, f"p-{point[:5]}", active=False)
    arm(arm_dir, point)
    answer = api.post(nic_url(vm, nic) + "/activate", json={})
    assert answer.status_code == 503, answer.get_json()
    assert ok(api.get(nic_url(vm, nic)))["plug_state"] == "plugging"
    back = killed_and_restarted(agent_proc)
    row = wait_converged(api, agent_proc, vm, nic, back, f"agent kill -9 {point.replace('_nic_hot', ' ')}")
    assert row["plugged"] is True                   # what the user asked, done
    wait_for_serial(running["serial"], rf"PB-NETS:.*{nic['mac']}", timeout=60)
    history = codes(engine_parts, nic)
    assert "HOST_UNREACHABLE" in history and history[-1] == "NIC_PLUGGED"
    if point == "before_nic_hotplug":
        assert "NIC_PLUG_RETRIED" in history       # never attached: sent again


@pytest.mark.parametrize("point", ["before_nic_hotunplug", "after_nic_hotunplug"])
def test_agent_killed_during_an_unplug(point, running, api, engine_parts, agent_proc, arm_dir):
    vm = running["vm"]
    nic = add_nic(api, vm, f"u-{point[:5]}", active=True)
    wait_for_serial(running["serial"], rf"PB-NETS:.*{nic['mac']}", timeout=60)
    arm(arm_dir, point)
    answer = api.post(nic_url(vm, nic) + "/deactivate", json={})
    assert answer.status_code == 503, answer.get_json()
    back = killed_and_restarted(agent_proc)
    row = wait_converged(api, agent_proc, vm, nic, back, f"agent kill -9 {point.replace('_nic_hot', ' ')}")
    assert row["plugged"] is False                  # what the user asked, done
    history = codes(engine_parts, nic)
    assert history[-1] == "NIC_UNPLUGGED" and "NIC_UNPLUG_FAILED" not in history
    if point == "before_nic_hotunplug":
        assert "NIC_UNPLUG_RETRIED" in history     # never detached: sent again, not blamed on the guest


@pytest.mark.parametrize("plug", [True, False], ids=["plug", "unplug"])
def test_engine_killed_between_the_host_call_and_the_commit(plug, running, api, engine_parts, agent_proc, monitor):
    vm = running["vm"]
    nic = add_nic(api, vm, f"e-{'p' if plug else 'u'}", active=not plug)
    # The engine dies with its monitor: a monitor left running could apply the host's own event of
    # the unplug before the row is read, and the engine's restart would then have nothing to settle.
    monitor.stop(timeout=10)
    die_after_host_call(engine_parts, vm["id"], nic["id"], plug=plug)
    assert ok(api.get(nic_url(vm, nic)))["plug_state"] == ("plugging" if plug else "unplugging")
    restarted = time.monotonic()
    monitor.reconcile_all(startup=True)     # what the engine does first when it starts again
    monitor.start()
    row = wait_converged(api, agent_proc, vm, nic, restarted,
                         f"engine kill -9 after the host call ({'plug' if plug else 'unplug'})")
    assert row["plugged"] is plug


def test_a_guest_that_never_releases_the_device(api, host, engine_parts, agent_proc, monitor):
    """No guest OS answers the unplug: 202, then, past stale_after, the device is back as plugged with
    the reason, equal to the live domain, which still has it."""
    vm = new_vm(api, f"holds-{uuid.uuid4().hex[:6]}")
    nic = add_nic(api, vm, "nic1")
    ok(api.post(f"/api/vms/{vm['id']}/start", json={}))
    try:
        asked = time.monotonic()
        answer = api.post(nic_url(vm, nic) + "/deactivate", json={})
        assert answer.status_code == 202
        row = wait_converged(api, agent_proc, vm, nic, asked, "guest never releases (stale_after 15 s)")
        assert row["plugged"] is True and "did not release" in row["last_error"]["message"]
        assert codes(engine_parts, nic)[-2:] == ["NIC_UNPLUG_PENDING", "NIC_UNPLUG_FAILED"]
    finally:
        api.post(f"/api/vms/{vm['id']}/stop", json={})


def test_libvirtd_restarted_in_the_middle_of_an_unplug(running, api, engine_parts, agent_proc, arm_dir, libvirt_uri):
    vm = running["vm"]
    nic = add_nic(api, vm, "u-libvirtd", active=True)
    wait_for_serial(running["serial"], rf"PB-NETS:.*{nic['mac']}", timeout=60)
    arm(arm_dir, "before_nic_hotunplug", "restart-libvirtd")
    asked = time.monotonic()
    api.post(nic_url(vm, nic) + "/deactivate", json={})
    deadline = time.monotonic() + 60
    while subprocess.run(["virsh", "-c", libvirt_uri, "version"], capture_output=True).returncode != 0:
        assert time.monotonic() < deadline, "libvirtd did not come back"
        time.sleep(0.5)
    row = wait_converged(api, agent_proc, vm, nic, asked, "libvirtd restart before detach")
    # Whatever the outcome, it is recorded, and asking again works on the reconnected agent.
    assert codes(engine_parts, nic)[-1] in ("NIC_UNPLUGGED", "NIC_UNPLUG_FAILED")
    if row["plugged"]:
        assert ok(api.post(nic_url(vm, nic) + "/deactivate", json={}))["plugged"] is False
