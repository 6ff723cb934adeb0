"""pendant-link: the only process that talks to the world outside the device.

- `service`: the link itself (bus in, outside brokers out). `gate`, `gate_sentences`: the schema
  gate every outgoing event passes. `outbox`: what waits for a broker that is away.
- `outside`, `sender`: the outside connections. `commands`, `command_errors`: commands from
  phones and the home, and the errors they earn. `discovery`: Home Assistant's MQTT discovery.
  `hermes`: the Rhasspy Hermes mirror. `status`: the device's state as the outside sees it.
- `blobs`, `ratelimit`: what the gate uses to keep bulk data and floods out.
"""
