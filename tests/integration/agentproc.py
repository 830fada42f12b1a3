"""The host agent as a separate process (`plugboard agent serve`), so a test can stop and restart it
the way an administrator or a crash would. It listens on loopback with the development flag (plain
HTTP), or with `tls=True` on mutual TLS with certificates `plugboard pki init` makes in its state
dir (`client_cert`, `ca` for the caller). Kernels come from the test guest's directory; serial logs
may go anywhere under pytest's base temporary directory (the parent of `state_dir`)."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import requests

from tests.integration.guest import guest_dir

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class AgentProcess:
    def __init__(self, state_dir: Path, libvirt_uri: str, *, unplug_timeout: float = 3, tls: bool = False,
                 log_dir: Path | None = None, hooks_dir: Path | None = None) -> None:
        self.state_dir = state_dir
        self.port = free_port()
        self.url = f"{'https' if tls else 'http'}://127.0.0.1:{self.port}/jsonrpc"
        self.config = state_dir / "agent.toml"
        state_dir.mkdir(parents=True, exist_ok=True)
        text = (f'[agent]\nlisten = "127.0.0.1:{self.port}"\nlibvirt_uri = "{libvirt_uri}"\n'
                f'state_dir = "{state_dir}"\nunplug_timeout = {unplug_timeout}\n'
                f'image_dirs = ["{guest_dir()}"]\nlog_dir = "{log_dir or state_dir.parent}"\n')
        if hooks_dir is not None:
            text += f'hooks_dir = "{hooks_dir}"\n'

        self.client_cert: tuple[str, str] | None = None
        self.ca: str | None = None
        if tls:
            from plugboard import pki
            certs = pki.init(state_dir / "pki", ["127.0.0.1", "localhost"])
            self.client_cert, self.ca = (str(certs.engine_cert), str(certs.engine_key)), str(certs.ca_cert)
            text += f'[tls]\ncert = "{certs.agent_cert}"\nkey = "{certs.agent_key}"\nca = "{certs.ca_cert}"\n'
        else:
            text = text.replace("[agent]\n", "[agent]\ninsecure_dev_http = true\n", 1)
        self.config.write_text(text)
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 30) -> None:
        log = open(self.state_dir / "agent.log", "ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "plugboard.cli", "agent", "serve",
                                      "--config", str(self.config)], cwd=ROOT, stdout=log, stderr=log,
                                     env={**os.environ, "PYTHONPATH": str(ROOT)})
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"agent exited with {self.proc.returncode}; see {self.state_dir / 'agent.log'}")
            try:
                requests.post(self.url, json={"jsonrpc": "2.0", "method": "Host.ping", "id": 0}, timeout=1,
                              cert=self.client_cert, verify=self.ca or True)
                return
            except requests.RequestException:
                time.sleep(0.2)
        raise RuntimeError("agent did not answer")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
