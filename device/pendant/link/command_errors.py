"""Commands from outside: what each becomes, who may send it, and the errors it earns.

Commands from the phone (`pendant/<id>/cmd/<name>`) are checked by `pendant.link.commands`; valid
ones go to the bus as `pendant-bus/cmd/<name>`, malformed ones come back as a public `error`
event. Commands on the home broker (`pendant/<id>/cmd/<name>` there, when it is not also the
phones' broker) come from whoever may publish there: an unmute or a capture is refused with an
`error` (`commands.home_refusal`), so no client of the home broker can open the microphone or
the camera. A retained command is refused, deleted from the outside broker (an empty retained
message on its topic) and reported as an `error`, but for states (`area`), which are taken
retained and kept retained on the bus as well. To see whether a command was sent retained the
outside connections are MQTT 5, subscribed with "retain as published" (MQTT 3.1.1 brokers clear
the flag on live messages) and "no local" (the link's own deletion does not come back to it as
a command).

Error events are rate-limited by a token bucket (`ERROR_BURST` at once, then one per
`ERROR_EVERY_S` seconds); the ones over it are counted in `ErrorReports.suppressed` and logged
in one line, not published, so a flood of malformed commands cannot crowd intents out. The
outbox keeps error events in RAM only (`pendant.link.outbox.VOLATILE`).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

import aiomqtt

from pendant.core.config import Config
from pendant.core.events import Command, Error
from pendant.link import commands, discovery
from pendant.link.outside import TIMEOUT_S, payload_of
from pendant.link.ratelimit import TokenBucket

log = logging.getLogger("pendant.link.service")

# Error events: 10 at once, then one every 6 s (10 a minute). A phone that gets a command
# wrong hears about the first ones at once; a flood costs at most that many public events.
ERROR_BURST = 10
ERROR_EVERY_S = 6.0


@dataclass(frozen=True)
class Verdict:
    """What one command from outside becomes."""

    name: str
    outcome: str
    """forwarded, rejected, refused (from the home broker), retained (refused and deleted), or
    "" when there is nothing to do (someone deleting a retained command)."""
    command: Command | None = None
    """For the bus."""
    error: Error | None = None
    """To report."""
    clear: bool = False
    """A retained command, to delete from the broker it came from."""


def judge(
    config: Config, topic: str, payload: bytes, retain: bool = False, from_home: bool = False
) -> Verdict:
    """What the command on `topic` becomes (see the module's docstring).

    `from_home`: it came from the home broker, where phones are not (link.host beside
    link.socket), so an unmute or a capture is refused.
    """
    name = topic.rsplit("/", 1)[-1]
    if retain and name not in commands.STATES:
        # A retained command would run again on every reconnect; a state (the area) is
        # meant to be retained, and setting it again changes nothing.
        if not payload:
            return Verdict(name, "")  # someone deleting a retained command
        log.warning("link: refused a retained command %r", commands.excerpt(name))
        error = commands.retained_error(name, config.device_id)
        return Verdict(name, "retained", error=error, clear=True)
    result = commands.parse_command(name, payload, config.device_id, areas=config.home.areas)
    if not isinstance(result, Command):
        # A retained state that is malformed would be refused again at every reconnect.
        return Verdict(name, "rejected", error=result, clear=retain and bool(payload))
    refusal = commands.home_refusal(result) if from_home else None
    if refusal is not None:
        error = Error(device_id=result.device_id, command=name, reason=refusal)
        return Verdict(name, "refused", error=error)
    return Verdict(name, "forwarded", command=result)


class ErrorReports:
    """The link's `error` events, within the rate limit (see the module's docstring)."""

    def __init__(self, out: Callable[[Error], None]) -> None:
        self.out = out
        """Where an error within the limit goes (through the gate, to the senders)."""
        self.bucket = TokenBucket(ERROR_BURST, ERROR_EVERY_S)
        self.suppressed = 0
        """Error events not published because of the rate limit."""
        self._since_report = 0

    def report(self, error: Error) -> None:
        """Sends `error` to `out`, and logs it, while the rate limit allows; past it, counts it in
        `suppressed` instead (the log says when that starts, and how many went unreported once it
        ends)."""
        if not self.bucket.take():
            if self._since_report == 0:
                log.warning(
                    "link: over %d error events; reporting one per %g s, counting the rest",
                    ERROR_BURST,
                    ERROR_EVERY_S,
                )
            self._since_report += 1
            self.suppressed += 1
            return
        if self._since_report:
            log.warning("link: %d error events were not reported", self._since_report)
            self._since_report = 0
        log.warning("link: refused a command: %s", error.reason)
        self.out(error)


async def receive(
    client: aiomqtt.Client,
    handle: Callable[[str, bytes, bool], bool],
    ha_online: Callable[[], None],
    counts: Counter[str],
) -> None:
    """Read one outside connection: commands to `handle` (True: delete it, it was retained),
    Home Assistant's birth message to `ha_online`; `counts["failed"]` for a command that
    raised."""
    async for message in client.messages:
        topic = str(message.topic)
        if topic == discovery.STATUS_TOPIC:
            # A retained `online` is old news: discovery already went out on connect.
            if payload_of(message) == b"online" and not message.retain:
                ha_online()
            continue
        if topic.startswith(discovery.PREFIX + "/"):
            continue  # our own announcements, echoed back by the broker
        try:
            clear = handle(topic, payload_of(message), message.retain)
        except Exception:
            # Outside input must never stop the link; the fuzz tests say this is unreachable.
            counts["failed"] += 1
            log.exception("link: a command could not be handled")
            continue
        if clear:
            # Deleted, so the broker neither stores it nor replays it on every reconnect.
            await client.publish(topic, b"", qos=1, retain=True, timeout=TIMEOUT_S)
