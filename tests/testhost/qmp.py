"""A small client of QEMU's machine protocol (QMP) on a unix socket: what L0 uses to plug and pull
USB devices on the test host and to end it. One connection, one command at a time (a lock), each
answer awaited with a deadline; asynchronous events QEMU sends meanwhile are skipped."""
from __future__ import annotations

import json
import socket
import threading
import time
from pathlib import Path
from typing import Any


class QmpError(RuntimeError):
    pass


class Qmp:
    def __init__(self, path: Path, *, timeout: float = 10.0) -> None:
        self.path = path
        self.timeout = timeout
        self._lock = threading.Lock()
        self._sock: socket.socket | None = None
        self._buf = b""

    def connect(self, deadline: float) -> None:
        """Connect (QEMU creates the socket a moment after it starts) and leave capabilities mode."""
        while True:
            try:
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                sock.settimeout(self.timeout)
                sock.connect(str(self.path))
                break
            except OSError:
                sock.close()
                if time.monotonic() >= deadline:
                    raise QmpError(f"QEMU's monitor socket {self.path} does not answer") from None
                time.sleep(0.1)
        self._sock = sock
        greeting = self._read()
        if "QMP" not in greeting:
            raise QmpError(f"not a QMP greeting: {greeting}")
        self.execute("qmp_capabilities")

    def _read(self) -> dict[str, Any]:
        assert self._sock is not None
        while b"\n" not in self._buf:
            chunk = self._sock.recv(65536)
            if not chunk:
                raise QmpError("QEMU closed the monitor connection")
            self._buf += chunk
        line, self._buf = self._buf.split(b"\n", 1)
        return json.loads(line)

    def execute(self, command: str, **arguments: Any) -> Any:
        if self._sock is None:
            raise QmpError("not connected")
        with self._lock:
            msg: dict[str, Any] = {"execute": command}
            if arguments:
                msg["arguments"] = arguments
            self._sock.sendall(json.dumps(msg).encode() + b"\n")
            while True:
                answer = self._read()
                if "return" in answer:
                    return answer["return"]
                if "error" in answer:
                    raise QmpError(f"{command} {arguments}: {answer['error'].get('desc')}")
                # an event ({"event": ...}): not the answer

    def hmp(self, command_line: str) -> str:
        """A human monitor command; returns what it printed."""
        return self.execute("human-monitor-command", **{"command-line": command_line})

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
