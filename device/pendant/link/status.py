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
        """The events to send outside for one admitted event: itself, and/or a new status."""
        match event:
            case Mic():
                self.mic = event
                return [self._merged()]
            case Battery():
                self.battery = event
                return [event, self._merged()]
            case Camera():
                self.camera = event
                return [self._merged()]
        return [event]

    def _merged(self) -> Status:
        mic = self.mic
        if mic is None:
            return Status(
                device_id=self.device_id,
                state="starting",
                battery_pct=self.battery.pct if self.battery else None,
                camera_muted=self.camera.muted if self.camera else False,
            )
        fields = {
            "device_id": mic.device_id,
            "state": mic.state,
            "mic_muted": mic.muted,
            "asr_backend": mic.asr_backend,
        }
        if self.battery is None and self.camera is None:
            # Nothing to add: the mic's own id and time, so a bus redelivery stays one event.
            return Status(**fields, id=mic.id, timestamp_ms=mic.timestamp_ms)
        return Status(
            **fields,
            battery_pct=self.battery.pct if self.battery else None,
            camera_muted=self.camera.muted if self.camera else False,
        )
