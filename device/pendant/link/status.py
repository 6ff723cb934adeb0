"""The one retained status the link publishes, merged from the components that know its parts.

The ears know the mic and what they are doing (`Mic`), the eyes the camera (`Camera`), the body
the battery (`Battery`). Each publishes only its own part on the bus; the link folds them into a
`Status`, so a subscriber (Home Assistant's switches and battery sensor, the phone) reads one
retained message that always carries every part last reported.
"""

from __future__ import annotations

from pendant.core.events import Battery, Camera, Event, Mic, Status


class DeviceState:
    """The parts last reported, and the `Status` they make."""

    def __init__(self, device_id: str) -> None:
        self.device_id = device_id
        self.mic: Mic | None = None
        self.battery: Battery | None = None
        self.camera: Camera | None = None

    def fold(self, event: Event) -> list[Event]:
        """The events to send outside for one admitted event: itself, and/or a new status.

        No status goes out before the ears have said how the mic is: one that guessed would
        tell Home Assistant's switch that a muted mic is listening. A mic report the bus
        delivers again (the same id) makes no second status."""
        match event:
            case Mic():
                if self.mic is not None and event.id == self.mic.id:
                    return []
                self.mic = event
                return [self._merged(event.id)]
            case Battery():
                self.battery = event
                return [event] if self.mic is None else [event, self._merged()]
            case Camera():
                self.camera = event
                return [] if self.mic is None else [self._merged()]
        return [event]

    def _merged(self, same_as: str | None = None) -> Status:
        """The status of the parts known: this device's id and the link's own time (nothing of
        the senders' choosing but the parts' values), and `same_as`'s id for a mic report, so
        that the link's keyed reissue of it stays one id for one report."""
        mic = self.mic
        assert mic is not None
        fields: dict[str, object] = {
            "device_id": self.device_id,
            "state": mic.state,
            "mic_muted": mic.muted,
            "asr_backend": mic.asr_backend,
            "battery_pct": self.battery.pct if self.battery else None,
            "camera_muted": self.camera.muted if self.camera else False,
        }
        if same_as is not None:
            fields["id"] = same_as
        return Status.model_validate(fields)
