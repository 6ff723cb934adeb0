"""The one retained status the link publishes, merged from the components that know its parts.

The ears know the mic and what they are doing (`Mic`), the eyes the camera (`Camera`), the body
the battery (`Battery`). Each publishes only its own part on the bus; the link folds them into a
`Status`, so a subscriber (Home Assistant's switches and battery sensor, the phone) reads one
retained message that always carries every part last reported.
"""

from __future__ import annotations

import hashlib

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
                return [self._merged()]
            case Battery():
                self.battery = event
                return [event] if self.mic is None else [event, self._merged()]
            case Camera():
                self.camera = event
                return [] if self.mic is None else [self._merged()]
        return [event]

    def _merged(self) -> Status:
        """The status of the parts known: this device's id, the link's own time, and an id
        made of the parts' ids (the gate's, none of the senders' choosing): a report delivered
        again makes the same status, a changed part a new one, so the outbox never keeps an
        older status under a newer one's id."""
        mic = self.mic
        assert mic is not None
        parts = (mic, self.camera, self.battery)
        ids = "|".join(part.id if part is not None else "-" for part in parts)
        return Status(
            id=hashlib.sha256(ids.encode()).hexdigest()[:32],
            device_id=self.device_id,
            state=mic.state,
            mic_muted=mic.muted,
            asr_backend=mic.asr_backend,
            battery_pct=self.battery.pct if self.battery else None,
            camera_muted=self.camera.muted if self.camera else False,
        )
