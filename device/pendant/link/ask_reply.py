"""What a target of `pendant.link.ask` answers: words to speak, and what it did or asked to do."""

from __future__ import annotations

from dataclasses import dataclass

from pendant.core.config import Config, DeviceKind, HomeDevice
from pendant.core.names import normalize

TOOLS = {"HassTurnOn": "turn on", "HassTurnOff": "turn off"}
"""The intents a model may ask for, and the words of the sentence such an intent says."""
SWITCHABLE = frozenset(
    {DeviceKind.light, DeviceKind.fan, DeviceKind.switch, DeviceKind.media_player}
)
"""The kinds a model may switch on or off: nothing that opens the home (locks, covers, valves)."""
REFUSED_CALL = "The assistant asked for something the pendant does not let it do."
"""Said instead of the model's words when its tool call was refused: they may claim it done."""


def switchable_names(config: Config) -> list[str]:
    """Devices a model may name: of a `SWITCHABLE` kind, and no other device of the home shares
    the name (it would be a lock's as well to Home Assistant)."""
    kinds: dict[str, set[DeviceKind]] = {}
    for d in config.home.devices:
        kinds.setdefault(d.name.lower(), set()).add(d.kind)
    return sorted(d.name for d in config.home.devices if kinds[d.name.lower()] <= SWITCHABLE)


@dataclass(frozen=True)
class ToolCall:
    """An intent the model asked for, checked against the home: `slot` is `name` or `area`."""

    intent: str
    slot: str
    value: str

    @property
    def sentence(self) -> str:
        """What the intent says it was, in the recognisers' form: 'turn off kitchen lights',
        'turn on the lights in the kitchen'."""
        words = normalize(self.value)
        if self.slot == "area":
            return " ".join([TOOLS[self.intent], "the lights in the", *words])
        return " ".join([TOOLS[self.intent], *words])

    def device(self, config: Config) -> HomeDevice:
        """The device a `name` call names: the switchable one of that name."""
        return next(d for d in config.home.devices if d.name == self.value and d.kind in SWITCHABLE)


@dataclass(frozen=True)
class Reply:
    """What a target answered: words to speak, and what it did or asked to do."""

    text: str
    call: ToolCall | None = None
    refused: str = ""
    """Why the target (or the link, of a tool call) said no; '' when it did not."""
    acted: bool = False
    """The target did something itself (Home Assistant's `action_done`)."""
    area: str | None = None
    """Home Assistant only: the pendant's area there (its device registry), the room it
    resolves "the lights" and "here" with; None when the pendant has none there."""
