"""What a segue process needs around its own work, shared by `segue-server` and `segue-device`.

- `servicekit.settings`: TOML settings into frozen dataclasses with cattrs, errors naming the key.
- `servicekit.systemd`: readiness and watchdog notifications to systemd (`Type=notify`).

A package of its own because the device and the server may not import each other and the core
(`icp`) imports nothing outside the standard library; it imports only `icp` (and cattrs).
"""
