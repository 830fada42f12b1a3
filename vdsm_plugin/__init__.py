"""Plugboard's host agent: JSON-RPC verbs that plug devices into libvirt domains on one host."""
