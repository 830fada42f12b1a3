"""The guest operating systems the engine knows and what each supports.

Declared once as data. NIC hot-plug needs both a guest that supports it and a cluster whose
compatibility version is at least 3.1 (the first oVirt release with the feature); cold plug (VM down)
is allowed for every OS.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

NIC_HOTPLUG = "nic_hotplug"
FEATURES = (NIC_HOTPLUG,)

# The first cluster compatibility version that has each feature.
FEATURE_MIN_CLUSTER_VERSION: dict[str, tuple[int, int]] = {NIC_HOTPLUG: (3, 1)}
_VERSION_RE = re.compile(r"([0-9]{1,4})\.([0-9]{1,4})")


@dataclass(frozen=True)
class OsType:
    id: str
    name: str
    family: str          # linux, windows, other
    nic_hotplug: bool
    arch: str = "x86_64"


_TABLE: tuple[OsType, ...] = (
    # The operating systems of the original NIC hot-plug design.
    OsType("windows_7", "Windows 7", "windows", True, "i686"),
    OsType("windows_7x64", "Windows 7 x64", "windows", True),
    OsType("windows_2008", "Windows 2008", "windows", True, "i686"),
    OsType("windows_2008x64", "Windows 2008 x64", "windows", True),
    OsType("windows_2008r2x64", "Windows 2008 R2 x64", "windows", True),
    OsType("rhel_5", "Red Hat Enterprise Linux 5.x", "linux", True, "i686"),
    OsType("rhel_5x64", "Red Hat Enterprise Linux 5.x x64", "linux", True),
    OsType("rhel_6", "Red Hat Enterprise Linux 6.x", "linux", True, "i686"),
    OsType("rhel_6x64", "Red Hat Enterprise Linux 6.x x64", "linux", True),
    # Current guests: all take PCI hot-plug (ACPI on pc, pcie-root-port on q35).
    OsType("rhel_7x64", "Red Hat Enterprise Linux 7.x x64", "linux", True),
    OsType("rhel_8x64", "Red Hat Enterprise Linux 8.x x64", "linux", True),
    OsType("rhel_9x64", "Red Hat Enterprise Linux 9.x x64", "linux", True),
    OsType("debian_12", "Debian 12", "linux", True),
    OsType("ubuntu_22_04", "Ubuntu 22.04 LTS", "linux", True),
    OsType("ubuntu_24_04", "Ubuntu 24.04 LTS", "linux", True),
    OsType("other_linux", "Linux", "linux", True),
    OsType("windows_10x64", "Windows 10 x64", "windows", True),
    OsType("windows_11", "Windows 11", "windows", True),
    OsType("windows_2019x64", "Windows 2019 x64", "windows", True),
    OsType("windows_2022x64", "Windows 2022 x64", "windows", True),
    # No PCI hot-plug in the guest.
    OsType("windows_xp", "Windows XP", "windows", False, "i686"),
    OsType("other", "Other OS", "other", False),
)

_BY_ID: dict[str, OsType] = {o.id: o for o in _TABLE}


def all() -> tuple[OsType, ...]:  # noqa: A001 - the module's verb
    return _TABLE


def get(os_type: str) -> OsType | None:
    return _BY_ID.get(os_type)


def parse_version(version: str) -> tuple[int, int] | None:
    """"4.7" -> (4, 7); None when it is not MAJOR.MINOR in ASCII digits, nothing around them."""
    match = _VERSION_RE.fullmatch(version) if isinstance(version, str) else None
    return None if match is None else (int(match[1]), int(match[2]))


def cluster_supports(feature: str, cluster_version: str) -> bool:
    parsed = parse_version(cluster_version)
    return parsed is not None and parsed >= FEATURE_MIN_CLUSTER_VERSION[feature]


def os_supports(os_type: str, feature: str) -> bool:
    info = get(os_type)
    return bool(info is not None and getattr(info, feature))


def supports(os_type: str, feature: str, cluster_version: str) -> bool:
    """Whether a VM of `os_type` in a cluster of `cluster_version` can use `feature`."""
    if feature not in FEATURES:
        raise ValueError(f"unknown feature {feature!r}")
    return os_supports(os_type, feature) and cluster_supports(feature, cluster_version)
