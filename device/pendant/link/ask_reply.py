"""What a target of `pendant.link.ask` answers: words to speak, and what it did or asked to do."""

from __future__ import annotations

from dataclasses import dataclass

from pendant.core.names import normalize

TOOLS = {"HassTurnOn": "turn on", "HassTurnOff": "turn off"}
"""The intents a model may ask for, and the words of the sentence such an intent says."""


@dataclass(frozen=True)
class ToolCall:
    """An intent the model asked for, checked against the home: `slot` is `name` or `area`."""

    intent: str
    slot: str
    value: str

    @property
    def sentence(self) -> str:
        """What the intent says it was, in the recognisers' form: 'turn on kitchen light'."""
        return " ".join([TOOLS[self.intent], *normalize(self.value)])


@dataclass(frozen=True)
class Reply:
    """What a target answered: words to speak, and what it did or asked to do."""

    text: str
    call: ToolCall | None = None
    refused: str = ""
    """Why the target (or the link, of a tool call) said no; '' when it did not."""
    acted: bool = False
    """The target did something itself (Home Assistant's `action_done`)."""
