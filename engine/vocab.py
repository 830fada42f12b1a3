"""The engine's words, each spelled once: VM statuses, plug states, host statuses, host-device
statuses and the value sets of VM settings. The models' CHECK constraints, the commands, the monitor,
the API schemas and the facade all import them from here."""
from __future__ import annotations

from typing import Final

# ---- VM status ---------------------------------------------------------------------------------
DOWN: Final = "down"
POWERING_UP: Final = "powering_up"
UP: Final = "up"
PAUSED: Final = "paused"
POWERING_DOWN: Final = "powering_down"
UNKNOWN: Final = "unknown"
VM_STATUSES = (DOWN, POWERING_UP, UP, PAUSED, POWERING_DOWN, UNKNOWN)
#: The VM has a domain on its host.
RUNNING_STATUSES = (UP, PAUSED, POWERING_UP, POWERING_DOWN, UNKNOWN)
#: The VM's start or stop command is running: the status is that command's to settle.
CHANGING_STATUSES = (POWERING_UP, POWERING_DOWN)
#: A device can be activated or deactivated: database only (down) or through the host (up).
PLUG_STATUSES = (DOWN, UP)

# ---- plug state of a device ------------------------------------------------------------------
STABLE: Final = "stable"
PLUGGING: Final = "plugging"
UNPLUGGING: Final = "unplugging"
PLUG_STATES = (STABLE, PLUGGING, UNPLUGGING)
IN_FLIGHT_STATES = (PLUGGING, UNPLUGGING)

# ---- hosts -------------------------------------------------------------------------------------
HOST_UP: Final = "up"
HOST_UNREACHABLE: Final = "unreachable"
HOST_MAINTENANCE: Final = "maintenance"
HOST_STATUSES = (HOST_UP, HOST_UNREACHABLE, HOST_MAINTENANCE)
#: How a host that cannot be reached is known to be down (oVirt's fence types): manual, an
#: administrator's word that it was rebooted. (No power management yet: no restart, start or stop.)
FENCE_MANUAL: Final = "manual"
FENCE_TYPES = (FENCE_MANUAL,)

# ---- host devices (Nova's words) -----------------------------------------------------------------
AVAILABLE: Final = "available"
CLAIMED: Final = "claimed"
ALLOCATED: Final = "allocated"
UNAVAILABLE: Final = "unavailable"
REMOVED: Final = "removed"
HOSTDEV_STATUSES = (AVAILABLE, CLAIMED, ALLOCATED, UNAVAILABLE, REMOVED)
#: A VM's USB device's startup policy (libvirt's words): optional starts without it, mandatory refuses.
OPTIONAL: Final = "optional"
MANDATORY: Final = "mandatory"

# ---- VM settings -------------------------------------------------------------------------------
MACHINES = ("pc", "q35")
GRAPHICS = ("none", "vnc", "spice")
NIC_MODELS = ("pv", "virtio", "rtl8139", "e1000", "e1000e")
AUDIT_SEVERITIES = ("info", "warning", "error")

# ---- roles of a user in a project ----------------------------------------------------------------
#: admin: everything, every project; member: the VMs of its projects.
ADMIN: Final = "admin"
MEMBER: Final = "member"
ROLES = (ADMIN, MEMBER)
