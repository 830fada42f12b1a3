"""The device core: `kinds` (each device kind described once), `state` (the plug state machine's named
transitions), `live` (the one live plug/unplug runner), `claims` (host-device claims)."""
