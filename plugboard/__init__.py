"""The `plugboard` command: runs the engine, the host agent, migrations and the demo."""
