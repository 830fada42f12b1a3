"""VDSM-style hooks: the runner, and the hook scripts shipped with Plugboard in `<hook point>/NN_name`
(see README.md in this directory for the contract)."""
from vdsm_plugin.hooks.runner import HOOK_POINTS, HookResult, HookRunner, is_hook_name

__all__ = ["HOOK_POINTS", "HookResult", "HookRunner", "is_hook_name"]
