"""The composition root: the only package that knows every component.

- `cli`: the `pendant` command. `services`: the factory of each systemd service's component.
- `one_process`: `pendant run`, every component in one process and one loop, over the bus.
- `replay`: `pendant listen`, a WAV file through the ears. `local_broker`: a throwaway mosquitto.
- `doctor`: `pendant doctor`. `home_import`: `pendant home import`. `build_info`: what is installed.

Import rule: nothing imports `app` but `pendant.__main__` (`make lint` checks it).
"""
