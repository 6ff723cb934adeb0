"""The composition root: the only package that knows every component.

- `cli`: the `pendant` command. `services`: which function runs each systemd service.
- `one_process`: `pendant run`, every component in one process over a local broker.
- `replay`: `pendant listen`, a WAV file through the ears. `local_broker`: a throwaway mosquitto.
- `doctor`: `pendant doctor`. `home_import`: `pendant home import`. `build_info`: what is installed.

Import rule: nothing imports `app` but `pendant.__main__` (`make lint` checks it).
"""
