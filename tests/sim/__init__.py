"""Simulated host agents: many hosts in one process, each speaking the agent's JSON-RPC contract."""
