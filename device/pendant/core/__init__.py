"""What every part of the pendant stands on, and nothing else: no component lives here.

- `errors`: the one error tree (each inherits the builtin it refines).
- `events`: the typed events on the bus and their public JSON schemas.
- `config`: the strict TOML config, which writes its own reference.
- `bus`, `mqtt`: the device-local MQTT bus, and the one MQTT client builder.
- `state`: atomic, durable state files. `systemd`: READY, the watchdog, status.
- `logs`: journald on the device, stderr elsewhere. `names`, `vocabulary`: what the home's
  names and sentences may be. `model_cache`: verified models on disk. `onnx_session`: one way
  to open an ONNX model.

Import rule: `core` imports nothing else of the pendant's (`make lint` checks it).
"""
