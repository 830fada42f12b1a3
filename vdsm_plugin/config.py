"""The agent's settings, from a TOML file (section [agent], [tls], [whitelist]) with defaults that run
on a single host out of the box. Bad values are refused at start, naming the key."""
from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SHIPPED_HOOKS = Path(__file__).resolve().parent / "hooks"
# Where the files a VM reads (kernel, initrd) and writes (serial log) may live; anything else is
# refused (see verbs/vm.py). A deployment names its own in [agent] image_dirs / log_dir.
DEFAULT_IMAGE_DIRS = (Path("/var/lib/plugboard/images"),)
DEFAULT_LOG_DIR = Path("/var/log/plugboard/vms")


class ConfigError(ValueError):
    pass


@dataclass(frozen=True)
class AgentConfig:
    listen_host: str = "127.0.0.1"
    listen_port: int = 54321
    libvirt_uri: str = "qemu:///system"
    # Where host devices are listed from; normally the same connection. A libvirt test-driver URI
    # (test:///path/devices.xml) lets a host without USB or IOMMU present a declared inventory.
    nodedev_uri: str | None = None
    hooks_dir: Path = SHIPPED_HOOKS
    state_dir: Path = Path("/var/lib/plugboard/agent")
    unplug_timeout: float = 10.0      # seconds to wait for DEVICE_REMOVED before answering "pending"
    hook_timeout: float = 30.0        # per hook script
    lock_timeout: float = 120.0       # how long a device operation waits for the VM's previous one
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_ca: Path | None = None        # clients must present a certificate signed by it
    # Plain HTTP, for development on loopback only (server.serve refuses it anywhere else).
    insecure_dev_http: bool = False
    image_dirs: tuple[Path, ...] = DEFAULT_IMAGE_DIRS
    log_dir: Path = DEFAULT_LOG_DIR
    max_connections: int = 64         # connections served at once; more are answered 503
    idle_timeout: float = 60.0        # a keep-alive connection idle this long is closed
    body_timeout: float = 10.0        # the whole request body must arrive within this
    whitelist: dict[str, Any] = field(default_factory=dict)

    @property
    def journal_path(self) -> Path:
        return self.state_dir / "events.db"

    @property
    def hook_scratch_dir(self) -> Path:
        """Where the files handed to hook scripts are written (cleared at start)."""
        return self.state_dir / "hook-files"

    @property
    def host_id_path(self) -> Path:
        return self.state_dir / "host-id"

    @property
    def inflight_path(self) -> Path:
        """Where agents before the journal kept the unplugs in flight; taken over at start (Removals)."""
        return self.state_dir / "unplugs-in-flight.json"

    @property
    def tls(self) -> bool:
        return self.tls_cert is not None


def _listen(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) < 65536:  # 0: any free port
        raise ConfigError(f"agent.listen: expected HOST:PORT, got {value!r}")
    return host.strip("[]") or "127.0.0.1", int(port)


def _positive(section: dict[str, Any], key: str, default: float) -> float:
    value = section.get(key, default)
    if not isinstance(value, (int, float)) or isinstance(value, bool) or value <= 0:
        raise ConfigError(f"agent.{key}: expected a positive number, got {value!r}")
    return float(value)


def _bool(section: dict[str, Any], key: str, default: bool) -> bool:
    value = section.get(key, default)
    if not isinstance(value, bool):
        raise ConfigError(f"agent.{key}: expected true or false, got {value!r}")
    return value


def _count(section: dict[str, Any], key: str, default: int) -> int:
    value = section.get(key, default)
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ConfigError(f"agent.{key}: expected a positive integer, got {value!r}")
    return value


def _dirs(section: dict[str, Any], key: str, default: tuple[Path, ...]) -> tuple[Path, ...]:
    value = section.get(key)
    if value is None:
        return default
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value or not all(isinstance(v, str) and v.startswith("/") for v in value):
        raise ConfigError(f"agent.{key}: expected a list of absolute directories, got {value!r}")
    return tuple(Path(v) for v in value)


def load(path: Path | None = None, **overrides: Any) -> AgentConfig:
    data: dict[str, Any] = {}
    if path is not None:
        try:
            data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError) as e:
            raise ConfigError(f"{path}: {e}") from e
    unknown = set(data) - {"agent", "tls", "whitelist"}
    if unknown:
        raise ConfigError(f"unknown section(s): {', '.join(sorted(unknown))}")
    agent = {**data.get("agent", {}), **{k: v for k, v in overrides.items() if v is not None}}
    known = {"listen", "libvirt_uri", "nodedev_uri", "hooks_dir", "state_dir", "unplug_timeout", "hook_timeout",
             "lock_timeout", "insecure_dev_http", "image_dirs", "log_dir", "max_connections", "idle_timeout",
             "body_timeout"}
    if set(agent) - known:
        raise ConfigError(f"agent: unknown key(s): {', '.join(sorted(set(agent) - known))}")
    host, port = _listen(agent.get("listen", "127.0.0.1:54321"))
    tls = data.get("tls", {})
    if set(tls) - {"cert", "key", "ca"}:
        raise ConfigError("tls: keys are cert, key, ca")
    if bool(tls.get("cert")) != bool(tls.get("key")):
        raise ConfigError("tls: cert and key go together")
    return AgentConfig(
        listen_host=host,
        listen_port=port,
        libvirt_uri=str(agent.get("libvirt_uri", "qemu:///system")),
        nodedev_uri=agent.get("nodedev_uri"),
        hooks_dir=Path(agent.get("hooks_dir", SHIPPED_HOOKS)),
        state_dir=Path(agent.get("state_dir", "/var/lib/plugboard/agent")),
        unplug_timeout=_positive(agent, "unplug_timeout", 10.0),
        hook_timeout=_positive(agent, "hook_timeout", 30.0),
        lock_timeout=_positive(agent, "lock_timeout", 120.0),
        tls_cert=Path(tls["cert"]) if tls.get("cert") else None,
        tls_key=Path(tls["key"]) if tls.get("key") else None,
        tls_ca=Path(tls["ca"]) if tls.get("ca") else None,
        insecure_dev_http=_bool(agent, "insecure_dev_http", False),
        image_dirs=_dirs(agent, "image_dirs", DEFAULT_IMAGE_DIRS),
        log_dir=_dirs(agent, "log_dir", (DEFAULT_LOG_DIR,))[0],
        max_connections=_count(agent, "max_connections", 64),
        idle_timeout=_positive(agent, "idle_timeout", 60.0),
        body_timeout=_positive(agent, "body_timeout", 10.0),
        whitelist=dict(data.get("whitelist", {})),
    )
