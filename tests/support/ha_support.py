"""A real Home Assistant for the tests: the trixie root of `tools/ha_root.py`, run in a chroot.

`HomeAssistant(root, config_dir).start()` writes `tests/ha/configuration.yaml` into a fresh
config directory, bind-mounts it at /config inside the root (in a mount namespace of its own,
so nothing is left mounted on the host), starts `hass --skip-pip`, onboards an owner through
the onboarding API as the first-run screen does, and keeps the access token. The chroot shares
the host's network, so Home Assistant reaches the tests' mosquitto on 127.0.0.1 and the tests
reach its API on `port`. Needs root (chroot, mount); `reason_unavailable()` says why not.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pendant.app.local_broker import free_port
from tests.conftest import REPO

ROOT = REPO / ".cache" / "ha-root"
CONFIG = REPO / "tests" / "ha" / "configuration.yaml"
START_TIMEOUT_S = 240.0
PASSWORD = "pendant-test-owner"


def reason_unavailable(root: Path = ROOT) -> str | None:
    """Why Home Assistant cannot run here, or None."""
    if os.geteuid() != 0:
        return "running Home Assistant's root needs root (chroot, mount): sudo make test-ha"
    if not (root / ".pendant-ha-root").is_file():
        return f"no Home Assistant root at {root}: make test-ha builds it (tools/ha_root.py)"
    if shutil.which("unshare") is None:
        return "unshare is missing (util-linux)"
    return None


class HomeAssistantError(RuntimeError):
    pass


@dataclass
class HomeAssistant:
    config_dir: Path
    root: Path = ROOT
    port: int = field(default_factory=free_port)
    token: str = ""
    tokens: dict[str, Any] = field(default_factory=dict)
    """The owner's whole token answer (the frontend wants its refresh token too)."""
    _proc: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log(self) -> Path:
        return self.config_dir / "home-assistant.log"

    def start(self) -> HomeAssistant:
        self.config_dir.mkdir(parents=True, exist_ok=True)
        (self.config_dir / "configuration.yaml").write_text(
            CONFIG.read_text().replace("@PORT@", str(self.port))
        )
        (self.config_dir / "automations.yaml").write_text("[]\n")
        r, c = self.root, self.config_dir
        script = (
            f"mount -t proc proc {r}/proc && mount --rbind /dev {r}/dev"
            f" && mkdir -p {r}/config && mount --bind {c} {r}/config"
            f" && exec chroot {r} env -i HOME=/root PATH=/usr/bin:/bin LANG=C.UTF-8"
            " /opt/ha/bin/hass -c /config --skip-pip"
        )
        with (c / "console.log").open("wb") as out:
            self._proc = subprocess.Popen(
                ["unshare", "--mount", "--propagation", "private", "--fork", "sh", "-ec", script],
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self._wait_up()
        self._onboard()
        return self

    def _wait_up(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            assert self._proc is not None
            if self._proc.poll() is not None:
                raise HomeAssistantError(f"Home Assistant exited at start: {self._tail()}")
            try:
                with urllib.request.urlopen(f"{self.url}/api/onboarding", timeout=5) as r:
                    if r.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(1)
        raise HomeAssistantError(f"not up in {START_TIMEOUT_S:.0f} s: {self._tail()}")

    def log_tail(self) -> str:
        """Home Assistant's last warnings and errors, on one line."""
        lines = self.log.read_text(errors="replace").splitlines() if self.log.is_file() else []
        return " | ".join([ln for ln in lines if " WARNING " in ln or " ERROR " in ln][-6:])

    def _tail(self) -> str:
        text = ""
        for f in (self.config_dir / "console.log", self.log):
            if f.is_file():
                text += f.read_text(errors="replace")
        return " | ".join(text.strip().splitlines()[-5:])

    def _onboard(self) -> None:
        client = f"{self.url}/"
        user = self.request(
            "POST",
            "/api/onboarding/users",
            {
                "client_id": client,
                "name": "Owner",
                "username": "owner",
                "password": PASSWORD,
                "language": "en",
            },
        )
        body = urllib.parse.urlencode(
            {"grant_type": "authorization_code", "code": user["auth_code"], "client_id": client}
        ).encode()
        req = urllib.request.Request(f"{self.url}/auth/token", body)
        with urllib.request.urlopen(req, timeout=30) as r:
            self.tokens = json.load(r)
            self.token = self.tokens["access_token"]
        # The rest of onboarding, so the frontend opens on the dashboard, not the wizard.
        for step in ("core_config", "analytics", "integration"):
            data = {"client_id": client, "redirect_uri": client} if step == "integration" else {}
            self.request("POST", f"/api/onboarding/{step}", data)

    def request(self, method: str, path: str, data: Any = None, text: bool = False) -> Any:
        """One call to Home Assistant's REST API; the decoded JSON answer (or the text)."""
        body = None if data is None else json.dumps(data).encode()
        headers = {"Content-Type": "application/json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        req = urllib.request.Request(f"{self.url}{path}", body, headers, method=method)
        try:
            with urllib.request.urlopen(req, timeout=60) as r:
                raw = r.read()
        except urllib.error.HTTPError as e:
            raise HomeAssistantError(f"{method} {path}: {e.code} {e.read()[:300]!r}") from e
        return raw.decode() if text or raw[:1] not in (b"{", b"[") else json.loads(raw)

    def template(self, template: str) -> str:
        """Home Assistant renders `template` (registries, states) and returns the text."""
        return self.request("POST", "/api/template", {"template": template}, text=True).strip()

    def state(self, entity_id: str) -> dict[str, Any] | None:
        try:
            return self.request("GET", f"/api/states/{entity_id}")
        except HomeAssistantError as e:
            if ": 404 " in str(e):
                return None
            raise

    def call(self, domain: str, service: str, data: dict[str, Any]) -> Any:
        return self.request("POST", f"/api/services/{domain}/{service}", data)

    def add_mqtt(self, port: int, username: str, password: str) -> None:
        """The MQTT integration, added as a user adds it: its config flow."""
        flow = self.request("POST", "/api/config/config_entries/flow", {"handler": "mqtt"})
        result = self.request(
            "POST",
            f"/api/config/config_entries/flow/{flow['flow_id']}",
            {
                "broker": "127.0.0.1",
                "port": port,
                "username": username,
                "password": password,
            },
        )
        if result.get("type") != "create_entry":
            raise HomeAssistantError(f"the MQTT config flow did not finish: {result}")

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()

    def __enter__(self) -> HomeAssistant:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc: object) -> None:
        self.stop()


def until(check: Any, what: str, timeout: float = 60.0) -> Any:
    """Polls `check()` until it returns something true (which it returns); a bounded wait."""
    deadline = time.monotonic() + timeout
    while True:
        got = check()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"Home Assistant: {what} did not happen in {timeout:.0f} s")
        time.sleep(0.5)
