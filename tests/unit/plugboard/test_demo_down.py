"""`plugboard down` (make stop) returns once the engine and the agent have exited."""
from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from plugboard import demo

# A process that takes a while to stop on SIGTERM, as the engine finishing its requests does.
SLOW_TO_STOP = ("import signal, sys, time\n"
                "signal.signal(signal.SIGTERM, lambda *_: (time.sleep(0.5), sys.exit(0)))\n"
                "print('ready', flush=True)\n"
                "time.sleep(60)\n")
DEAF = ("import signal, time\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "print('ready', flush=True)\n"
        "time.sleep(60)\n")


def _start(state: Path, name: str, code: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen([sys.executable, "-c", code], start_new_session=True, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    (state / f"{name}.pid").write_text(str(proc.pid))
    threading.Thread(target=proc.wait, daemon=True).start()     # reaped as a service manager would
    return proc


def test_down_returns_once_the_processes_have_exited(tmp_path: Path) -> None:
    engine = _start(tmp_path, "engine", SLOW_TO_STOP)
    agent = _start(tmp_path, "agent", SLOW_TO_STOP)
    t0 = time.monotonic()
    demo.down(tmp_path, engine_port=1)        # nothing listens on port 1: no VM to stop first
    assert time.monotonic() - t0 >= 0.5
    for proc in (engine, agent):
        assert not demo._group_alive(proc.pid), "still running after down"
        assert proc.wait(1) == 0            # it stopped on SIGTERM, in its own time
    assert not (tmp_path / "engine.pid").exists() and not (tmp_path / "agent.pid").exists()


def test_a_process_that_ignores_sigterm_is_killed_after_the_wait(tmp_path: Path) -> None:
    proc = _start(tmp_path, "agent", DEAF)
    t0 = time.monotonic()
    demo._stop_group(proc.pid, wait=0.3)
    proc.wait(5)
    assert proc.returncode == -signal.SIGKILL and time.monotonic() - t0 < 5
