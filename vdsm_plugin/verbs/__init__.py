"""The agent's verbs, one module per family, gathered in one explicit registry."""
from __future__ import annotations

from vdsm_plugin.verbs import controller, host, hostdev, nic, redirdev, vm

METHODS = {
    **host.METHODS,
    **vm.METHODS,
    **nic.METHODS,
    **hostdev.METHODS,
    **redirdev.METHODS,
    **controller.METHODS,
}
