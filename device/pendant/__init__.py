"""Pendant: privacy-first, on-device speech to intents over MQTT."""

import os

__version__ = "0.1.0"

# onnxruntime (1.32 on Linux) records telemetry with a persistent device id into
# ~/.cache/Microsoft/ at import time, meant for upload over HTTPS. Nothing about a pendant may
# leave it or be kept behind its wearer's back: off, before any module imports onnxruntime.
os.environ["ORT_DISABLE_TELEMETRY"] = "1"
