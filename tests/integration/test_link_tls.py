"""TLS from the link to its outside broker (issue 14 item 15): on by default for a host that is
not this machine, checked against `link.cafile`; plaintext only by `link.tls = false`, warned.

Against real mosquitto with a TLS listener, certificates made by openssl for the test.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from pendant.app.local_broker import LocalBroker
from pendant.app.replay import simulated
from pendant.core.config import Config, ConfigError, LinkConfig, load_config
from pendant.core.errors import PendantError
from pendant.link.service import Link, tls_context
from tests.support.tls_support import make_ca, make_server, needs_openssl

DEVICE = "pendant-test"
WAIT_S = 20.0

pytestmark = needs_openssl


def link_over_tls(bus_broker: LocalBroker, home: LocalBroker, cafile: Path, tmp: Path) -> Config:
    cfg = simulated(Config(device_id=DEVICE), bus_broker, home)
    link = LinkConfig.model_validate(
        {
            **cfg.link.model_dump(),
            # 127.0.0.1 is loopback, where TLS is off unless asked for: asked for here.
            "tls": True,
            "cafile": str(cafile),
            "outbox_path": str(tmp / "outbox.sqlite"),
        }
    )
    return cfg.model_copy(update={"link": link})


async def connects(config: Config, within_s: float = WAIT_S) -> bool:
    """Run the link until it is connected to its outside broker (True) or `within_s` passes.

    Connected means more than a TCP connect: the broker took the login and acknowledged the
    availability message (PUBACK) and every subscription (SUBACK), all over the TLS session.
    """
    link = Link(config)
    task = asyncio.create_task(link.run())
    try:
        await asyncio.wait_for(link.connected.wait(), within_s)
        return True
    except TimeoutError:
        return False
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


@pytest.fixture(scope="module")
def cas(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, Path, Path]]:
    """name -> (CA certificate, server certificate, server key), for a trusted and a rogue CA."""
    tmp = tmp_path_factory.mktemp("tls")
    out = {}
    for name in ("home", "rogue"):
        ca = make_ca(tmp / name, name)
        cert, key = make_server(tmp / name, ca)
        out[name] = (ca.cert, cert, key)
    return out


def test_the_link_speaks_tls_to_a_broker_its_ca_signed(
    tmp_path: Path, cas: dict[str, tuple[Path, Path, Path]]
) -> None:
    ca, cert, key = cas["home"]
    with (
        LocalBroker(users=("pendant",)) as bus_broker,
        LocalBroker(users=("link", "viewer"), tcp=True, tls=(cert, key)) as home,
    ):
        config = link_over_tls(bus_broker, home, ca, tmp_path)
        assert asyncio.run(asyncio.wait_for(connects(config), WAIT_S * 2))


def test_the_link_refuses_a_broker_another_ca_signed(
    tmp_path: Path, cas: dict[str, tuple[Path, Path, Path]], caplog: pytest.LogCaptureFixture
) -> None:
    trusted, _, _ = cas["home"]
    _, cert, key = cas["rogue"]
    with (
        LocalBroker(users=("pendant",)) as bus_broker,
        LocalBroker(users=("link", "viewer"), tcp=True, tls=(cert, key)) as home,
        caplog.at_level(logging.WARNING, logger="pendant.link.service"),
    ):
        config = link_over_tls(bus_broker, home, trusted, tmp_path)
        # A few attempts' worth (the backoff starts at 1 s).
        assert not asyncio.run(asyncio.wait_for(connects(config, 4.0), WAIT_S * 2))
    assert any("CERTIFICATE_VERIFY_FAILED" in r.getMessage() for r in caplog.records)


def test_a_plaintext_broker_is_not_reached_when_tls_is_on(tmp_path: Path) -> None:
    """TLS on means TLS: a broker that answers only in plain MQTT gets no login."""
    with (
        LocalBroker(users=("pendant",)) as bus_broker,
        LocalBroker(users=("link", "viewer"), tcp=True) as home,
    ):
        ca = make_ca(tmp_path / "ca").cert
        config = link_over_tls(bus_broker, home, ca, tmp_path)

        assert not asyncio.run(asyncio.wait_for(connects(config, 3.0), WAIT_S))


# --- the defaults, and the one-line errors ---------------------------------------------------


@pytest.mark.parametrize(
    ("host", "tls", "port"),
    [
        ("192.168.1.10", True, 8883),
        ("homeassistant.local", True, 8883),
        ("127.0.0.1", False, 1883),
        ("127.0.1.1", False, 1883),
        ("::1", False, 1883),
        ("localhost", False, 1883),
    ],
)
def test_tls_is_the_default_but_for_this_machine(host: str, tls: bool, port: int) -> None:
    link = LinkConfig(host=host)
    assert link.uses_tls is tls
    assert link.broker_port == port
    assert LinkConfig(host=host, port=1884).broker_port == 1884


def test_the_device_local_socket_needs_no_tls() -> None:
    assert LinkConfig(socket="/run/mosquitto/pendant.sock").uses_tls is False
    with pytest.raises(ValueError, match=r"link\.socket"):
        LinkConfig(socket="/run/mosquitto/pendant.sock", tls=True)


def test_plaintext_to_another_host_is_a_choice_and_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING, logger="pendant.link.service"):
        assert tls_context(LinkConfig(host="192.168.1.10", tls=False)) is None
        assert tls_context(LinkConfig(host="127.0.0.1")) is None  # this machine: no warning
    lines = [r.getMessage() for r in caplog.records]
    assert lines == [
        "link: plaintext to 192.168.1.10:1883 (link.tls = false): its password and every "
        "event cross the network readable"
    ]
    with pytest.raises(ValueError, match=r"link\.tls is false"):
        LinkConfig(host="192.168.1.10", tls=False, cafile="/etc/ssl/home.crt")


def test_a_bad_cafile_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(PendantError, match=r"^link\.cafile /nowhere\.crt: No such file"):
        tls_context(LinkConfig(host="192.168.1.10", cafile="/nowhere.crt"))
    junk = tmp_path / "junk.crt"
    junk.write_text("not a certificate\n")
    with pytest.raises(PendantError, match="not a PEM CA certificate") as err:
        tls_context(LinkConfig(host="192.168.1.10", cafile=str(junk)))
    assert "\n" not in str(err.value)


def test_the_config_file_takes_tls_and_cafile(tmp_path: Path) -> None:
    path = tmp_path / "pendant.toml"
    path.write_text('[link]\nhost = "10.0.0.2"\ncafile = "/etc/pendant/home-ca.crt"\n')
    link = load_config(path).link
    assert link.uses_tls and link.cafile == "/etc/pendant/home-ca.crt" and link.broker_port == 8883
    path.write_text('[link]\nhost = "10.0.0.2"\ntls = "maybe"\n')
    with pytest.raises(ConfigError):
        load_config(path)
