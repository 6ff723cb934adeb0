"""Install time: what `pendant-setup` and `make` do before any component runs.

- `provision`: bus accounts, passwords, certificates and mosquitto's files.
- `ca`: the device's own certificate authority, as the web server and pairing read it.
"""
