"""pendant-pairing: the pairing window (runs as root: it makes phone accounts).

- `service`: the window the button or the web desk opens, and the codes it checks.
- `accounts`: phone accounts in mosquitto's password file, and `pendant pair`.
"""
