"""Helpers for the hook tests: write real executable scripts into a hooks directory."""
from __future__ import annotations

import os
import sys
import textwrap
from pathlib import Path

PYTHON = sys.executable


def write_hook(hooks_dir: Path, point: str, name: str, body: str, *, mode: int = 0o755,
               shell: bool = True) -> Path:
    """Write `<hooks_dir>/<point>/<name>` with `body` (a /bin/sh script, or Python when shell=False)
    and chmod it to `mode`."""
    point_dir = hooks_dir / point
    point_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(point_dir, 0o755)
    path = point_dir / name
    shebang = "#!/bin/sh\n" if shell else f"#!{PYTHON}\n"
    path.write_text(shebang + textwrap.dedent(body).lstrip("\n"), encoding="utf-8")
    os.chmod(path, mode)
    return path


def pid_gone(pid: int) -> bool:
    """True when the process no longer exists or is a zombie waiting for its new parent."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("State:"):
                    return "Z" in line.split()[1]
    except FileNotFoundError:
        return True
    return False
