"""The agent's settings, from a TOML file (section [agent], [tls], [whitelist]) with defaults that run
on a single host out of the box. Bad values are refused at start, naming the key."""
from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SHIPPED_HOOKS = Path(__file__).resolve().parent / "hooks"


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
    tls_ca: Path | None = None        # when set, clients must present a certificate signed by it
    whitelist: dict[str, Any] = field(default_factory=dict)

    @property
    def journal_path(self) -> Path:
        return self.state_dir / "events.db"

    @property
    def inflight_path(self) -> Path:
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
             "lock_timeout"}
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
        whitelist=dict(data.get("whitelist", {})),
    )
