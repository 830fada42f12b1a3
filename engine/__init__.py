"""Plugboard's engine: the desired state of VMs and their devices, canDo commands and the REST API."""
