"""The pairing window (`pendant service pairing`): a one-time phone account, opened by the button.

The pendant has no screen, so pairing works like Bluetooth's pairing mode:

1. The wearer holds the button for `body.pairing_hold_s` (8 s). The body publishes
   `pairing_window` (open) on the bus.
2. This service makes a one-time account `phone-<6 hex>` (`pendant.pairing.accounts.pair`, which
   rewrites mosquitto's password file and ACL), makes mosquitto reload them (SIGHUP), and
   publishes, retained, the **offer** (`pairing_offer`: the pairing link's fragment, with the
   password) and the window's state (`pairing_status`, open, which turns the LED to "pairing").
3. A phone opens `https://<device>:8443/pair` (typed, or a QR sticker on the case): the web
   server, the offer's only reader (ACL), publishes a `pairing_request` for it (one per
   phone, by address) with a **code** from 1 to 4, distinct among the window's requests, and
   shows that phone alone its code: "press the button N times". It hands out nothing yet.
4. A phone asks: `pairing_status` says so (the body buzzes, the LED changes; neither tells a
   code). The wearer presses the button as many times as their phone's screen says, and the
   body reports the count (`pairing_confirm`). The request whose code is that count is
   accepted: the offer is published again naming it, and the web server hands the link to
   that phone alone, and publishes `pairing_taken`. Every other request is refused. A count
   that is no request's code ends the window for all, with an `error` (the LED flashes it):
   one wrong guess per window, so nobody gets in by the wearer's trying counts.

   Why a code: a device on the network that polls `/pair` asks the moment the window opens,
   before the wearer's phone can. The code tells the wearer's phone from it by something
   only the wearer's phone shows; a press that merely said "yes" would accept whoever asked.
5. On `pairing_taken` the window closes and the account stays: that phone is paired. If nobody
   takes the offer within `pairing.window_s` (120 s), or the wearer holds the button again, the
   window closes and the account is revoked. Either way the retained offer is cleared first.

The window outlives a bus outage (the service reconnects, the window stays open until its
deadline, and its offer is published again): the web server re-sends its "taken" report until
the bus acknowledges it, and again whenever it sees an offer it has handed out, so a phone that
took the offer while the bus was away stays paired. A repeated report is taken once.

One window at a time: a request to open while open is ignored. The only privileged pendant
process: it runs as root (to write the broker's files and signal it) but with no network, and
with a bus user that may read only the gestures, the requests and "taken" and write only the
offer, the state and an error.

mosquitto's pid is asked of the bus socket itself (SO_PEERCRED: the process that listens on
`bus.socket`), so there is no pid file to trust or to go stale. With a TCP bus (no socket) there
is no pid: the service logs that mosquitto must be reloaded by hand (`systemctl reload
mosquitto`).

A crash mid-window is safe: the account's name is written to `/etc/pendant/pairing.pending`
before the account is made, and the next start revokes it and clears the retained offer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import socket
import struct
import time
from pathlib import Path

import aiomqtt

from pendant.core import bus, wire
from pendant.core import state as durable
from pendant.core import systemd as notify
from pendant.core.config import Config
from pendant.core.errors import PendantError
from pendant.core.events import (
    PAIRING_CODES,
    Error,
    Event,
    PairingConfirm,
    PairingOffer,
    PairingRequest,
    PairingStatus,
    PairingTaken,
    PairingWindow,
)
from pendant.core.supervise import Ready, unobserved
from pendant.pairing.accounts import pair, revoke
from pendant.setup.provision import PHONE_PREFIX, Layout

log = logging.getLogger(__name__)

BEAT_S = 1.0
SUBSCRIPTIONS = ("pairing_window", "pairing_taken", "pairing_request", "pairing_confirm")
NO_MATCH_REASON = "pairing refused: the presses matched no phone's code; open the window again"
PENDING_NAME = "pairing.pending"
BUS_RETRY_S = (0.5, 1.0, 2.0, 5.0)


def peer_pid(sock: socket.socket | None) -> int | None:
    """The pid of the process at the other end of a unix socket (mosquitto, for the bus)."""
    if sock is None or sock.family != socket.AF_UNIX:
        return None
    fmt = "3i"  # struct ucred: pid, uid, gid
    try:
        pid, _uid, _gid = struct.unpack(
            fmt, sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize(fmt))
        )
    except OSError:
        return None
    return pid or None


class PairingService:
    """The pairing window on the bus. `root`: the filesystem root provisioning writes under.

    A component (`pendant.core.supervise.Component`): ready once on the bus with what a
    previous run left behind cleared.
    """

    name = "pairing"

    def __init__(self, config: Config, root: Path = Path("/")) -> None:
        self.config = config
        self.root = Path(root)
        self.layout = Layout(self.root.resolve())
        self.heartbeat = notify.Heartbeat()
        self.started = False
        """Once ready: a bus outage from then on is waited out, not an error."""
        # The live offer's account name (without phone-) and when it expires (monotonic).
        self.open_name: str | None = None
        self.deadline_s: float | None = None
        # The live offer, to publish again after a bus outage.
        self.offer: PairingOffer | None = None
        # The phones that asked for it (request id -> code), and the one the wearer accepted.
        self.requesters: dict[str, int] = {}
        self.accepted: str | None = None
        self.broker_pid: int | None = None
        # For tests and logs: accounts made, handed out, revoked.
        self.opened: list[str] = []
        self.taken: list[str] = []
        self.revoked: list[str] = []
        self.refused: list[str] = []

    @property
    def pending_file(self) -> Path:
        """Where the open window's one-time account name waits (`etc/pendant/pairing.pending`):
        written durably before the account exists, so one that a crash or power cut leaves
        behind is revoked at the next start."""
        return self.layout.etc / PENDING_NAME

    async def run(self, ready: Ready = unobserved) -> None:
        """Until cancelled (or the bus fails at start). Revokes what a previous run left open,
        then says `ready`.

        Once ready, a bus outage does not end it: it reconnects, and an open window stays open
        (until its deadline), its offer published again, so that a phone that took the offer
        while the bus was away is still paired when the web server's "taken" report arrives.
        """
        failures = 0
        while True:
            try:
                await self._connected(ready)
            except aiomqtt.MqttError as exc:
                if not self.started:
                    raise bus.error(self.config.bus, exc) from None
                if failures == 0:  # once per outage
                    where = self.config.bus.socket or self.config.bus.host
                    log.warning("bus at %s: %s (reconnecting)", where, exc)
            self.heartbeat.beat()  # waiting for the bus is not hanging
            await asyncio.sleep(BUS_RETRY_S[min(failures, len(BUS_RETRY_S) - 1)])
            failures += 1

    async def _connected(self, ready: Ready) -> None:
        async with bus.bus_client(self.config.bus, "pendant-pairing") as client:
            self.broker_pid = peer_pid(client._client.socket())  # type: ignore[arg-type]
            if self.broker_pid is None and not self.started:
                log.warning(
                    "bus is not a unix socket: mosquitto cannot be told to reload; after "
                    "each window run `systemctl reload mosquitto`"
                )
            if self.open_name is None:
                await self._revoke_leftover()
            for name in SUBSCRIPTIONS:
                await client.subscribe(bus.topic(name), qos=bus.QOS)
            if self.offer is None:
                # Whatever a previous run left retained is void now.
                await self._clear_offer(client)
                await self._publish_status(client)
            elif self.deadline_s is not None and time.monotonic() < self.deadline_s:
                # Back after an outage with the window open: offer it again. If the web server
                # handed it out meanwhile, it answers with "taken" (again). Past its deadline,
                # `_main` closes it at once instead.
                await bus.publish(client, self.offer)
                await self._publish_status(client)
            inbox: asyncio.Queue[Event] = asyncio.Queue()
            reader = asyncio.create_task(self._read(client, inbox), name="pairing-bus")
            try:
                if not self.started:
                    self.started = True
                    ready(f"pairing window closed (opens for {self.config.pairing.window_s:g} s)")
                await self._main(client, inbox, reader)
            except asyncio.CancelledError:
                if self.open_name is not None:
                    # Stopped mid-window: nobody will take this offer now.
                    with contextlib.suppress(aiomqtt.MqttError, PendantError, OSError):
                        await self._close(client, revoke_it=True)
                raise
            finally:
                reader.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await reader

    async def _read(self, client: aiomqtt.Client, inbox: asyncio.Queue[Event]) -> None:
        # bus.events: well-formed events on their own topics only (the body alone may open
        # the window or confirm a code, the web server alone report a request: the ACL).
        async for event in bus.events(client):
            inbox.put_nowait(event)
        raise aiomqtt.MqttError("the bus closed")

    async def _main(
        self,
        client: aiomqtt.Client,
        inbox: asyncio.Queue[Event],
        reader: asyncio.Task[None],
    ) -> None:
        while True:
            self.heartbeat.beat()
            if reader.done():
                reader.result()
            now = time.monotonic()
            if self.deadline_s is not None and now >= self.deadline_s:
                log.info("pairing window: nobody took the offer in time")
                await self._close(client, revoke_it=True)
                continue
            wake = min(t for t in (now + BEAT_S, self.deadline_s) if t is not None)
            try:
                async with asyncio.timeout(max(0.0, wake - now)):
                    event = await inbox.get()
            except TimeoutError:
                continue
            if isinstance(event, PairingWindow):
                if event.open:
                    await self._open(client)
                elif self.open_name is not None:
                    log.info("pairing window: closed by the wearer")
                    await self._close(client, revoke_it=True)
            elif isinstance(event, PairingRequest):
                await self._asked(client, event)
            elif isinstance(event, PairingConfirm):
                await self._confirm(client, event.presses)
            elif isinstance(event, PairingTaken):
                mine = self.open_name is not None and event.user == PHONE_PREFIX + self.open_name
                if mine and self.accepted is not None:
                    log.info("pairing window: %s paired", event.user)
                    self.taken.append(self.open_name)
                    await self._close(client, revoke_it=False)
                elif event.user.removeprefix(PHONE_PREFIX) in self.taken:
                    # Reported again (a re-sent report, a QoS 1 duplicate): paired already.
                    log.info("pairing: %s is paired already", event.user)
                else:
                    log.warning("pairing: 'taken' for %s, which is not on offer", event.user)

    async def _open(self, client: aiomqtt.Client) -> None:
        if self.open_name is not None:
            log.info("pairing window: already open (one at a time)")
            return
        name = secrets.token_hex(3)
        while self.layout.password_file(PHONE_PREFIX + name).exists():
            name = secrets.token_hex(3)
        # Written before the account exists: a crash from here on leaves a name to revoke.
        self.pending_file.parent.mkdir(parents=True, exist_ok=True)
        # Durable before the account is: after a power cut the name is there to revoke.
        durable.write_file(self.pending_file, name + "\n")
        try:
            pairing = await asyncio.to_thread(pair, self.root, name, None, self.broker_pid)
        except (PendantError, OSError) as exc:
            log.error("pairing window: cannot make the account: %s", exc)
            await self._revoke_leftover()
            return
        window_s = self.config.pairing.window_s
        self.open_name, self.deadline_s = name, time.monotonic() + window_s
        self.opened.append(name)
        until_ms = wire.now_ms() + int(window_s * 1000)
        device_id = self.config.device_id
        offer = PairingOffer(
            device_id=device_id, user=pairing.user, fragment=pairing.fragment, expires_ms=until_ms
        )
        self.offer = offer
        self.requesters, self.accepted = {}, None
        await bus.publish(client, offer)
        await self._publish_status(client)
        log.info("pairing window: open for %g s, one-time account %s", window_s, pairing.user)

    async def _asked(self, client: aiomqtt.Client, request: PairingRequest) -> None:
        """A phone asks for the offer, with its code: kept until the wearer's count."""
        if self.offer is None or request.user != self.offer.user:
            log.warning("pairing: a request for %s, which is not on offer", request.user)
            return
        if request.requester in self.requesters:
            return  # the same phone again (a re-sent report, a QoS 1 duplicate)
        if self.accepted is not None:
            log.info("pairing window: a phone asks after the wearer chose one; ignored")
            return
        taken = set(self.requesters.values())
        if request.code in taken or len(self.requesters) >= PAIRING_CODES:
            # The web server gives distinct codes; two alike could not be told apart by a count.
            log.warning("pairing window: refused a request whose code is taken")
            return
        self.requesters[request.requester] = request.code
        log.info(
            "pairing window: %d phone(s) ask; the count on the wearer's phone accepts it",
            len(self.requesters),
        )
        if len(self.requesters) == 1:
            await self._publish_status(client)

    async def _confirm(self, client: aiomqtt.Client, presses: int) -> None:
        """The wearer's count of presses: accept the phone with that code, refuse the rest.

        A count that is no phone's code refuses them all and ends the window: a second try
        would let the wearer (or a nudge from someone) walk through the codes.
        """
        if self.offer is None or self.accepted is not None:
            return
        if not self.requesters:
            log.info("pairing window: %d press(es), but no phone asks yet", presses)
            return
        matching = [r for r, code in self.requesters.items() if code == presses]
        if len(matching) != 1:
            log.warning(
                "pairing window: %d press(es) match none of %d phone(s); refusing them all",
                presses,
                len(self.requesters),
            )
            self.refused.append(str(self.open_name))
            await self._close(client, revoke_it=True)
            error = Error(device_id=self.config.device_id, reason=NO_MATCH_REASON)
            await bus.publish(client, error)
            return
        (self.accepted,) = matching
        refused = len(self.requesters) - 1
        # The offer again, naming the phone: the web server hands the login to it alone.
        self.offer = self.offer.model_copy(update={"requester": self.accepted})
        await bus.publish(client, self.offer)
        await self._publish_status(client)
        log.info("pairing window: the wearer accepted a phone by its code (%d refused)", refused)

    async def _close(self, client: aiomqtt.Client, revoke_it: bool) -> None:
        name, self.open_name, self.deadline_s = self.open_name, None, None
        self.offer = None
        self.requesters, self.accepted = {}, None
        if not revoke_it:
            # Paired: the account is no leftover now, whatever becomes of the bus from here
            # (a reconnect revokes what the pending file names).
            self.pending_file.unlink(missing_ok=True)
        # The offer goes first: no phone is handed a login that is about to be revoked.
        await self._clear_offer(client)
        if name is not None and revoke_it:
            await asyncio.to_thread(revoke, self.root, name, self.broker_pid)
            self.revoked.append(name)
            log.info("pairing window: revoked the unused account %s%s", PHONE_PREFIX, name)
        self.pending_file.unlink(missing_ok=True)
        await self._publish_status(client)

    async def _revoke_leftover(self) -> None:
        try:
            name = self.pending_file.read_text().strip()
        except FileNotFoundError:
            return
        if name:
            log.warning("pairing: revoking %s%s, left open unused", PHONE_PREFIX, name)
            try:
                await asyncio.to_thread(revoke, self.root, name, self.broker_pid)
            except (PendantError, OSError) as exc:
                # The record stays: the next start tries again.
                log.error("pairing: cannot revoke %s%s: %s", PHONE_PREFIX, name, exc)
                return
            self.revoked.append(name)
        self.pending_file.unlink(missing_ok=True)

    async def _clear_offer(self, client: aiomqtt.Client) -> None:
        await client.publish(bus.topic("pairing_offer"), b"", qos=bus.QOS, retain=True)

    async def _publish_status(self, client: aiomqtt.Client) -> None:
        """The window as it is now: closed, open, a phone asking, or accepted."""
        offer, device_id = self.offer, self.config.device_id
        if offer is None:
            status = PairingStatus(device_id=device_id, open=False)
        else:
            status = PairingStatus(
                device_id=device_id,
                open=True,
                user=offer.user,
                until_ms=offer.expires_ms,
                asked=bool(self.requesters),
                accepted=self.accepted is not None,
            )
        await bus.publish(client, status)


def component(config: Config, config_path: Path | None) -> PairingService:
    """The pairing window's service on the device's own filesystem (`pendant.app.services`)."""
    return PairingService(config)
