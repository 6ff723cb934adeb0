"""The one retained status the link publishes, merged from the components that know its parts.

The ears know the mic and what they are doing, the eyes the camera, the body the battery.
Each publishes only its own part on the bus; the link folds them into a `Status`, so a
subscriber (Home Assistant's switches and battery sensor, the phone) reads one retained
message that always carries every part last reported.
"""

from __future__ import annotations

from pendant.core.events import Battery, Camera, Event, Status


class DeviceState:
    def __init__(self, device_id: str) -> None:
        self.device_id = device_id
        self.status: Status | None = None
        self.battery: Battery | None = None
        self.camera: Camera | None = None

    def fold(self, event: Event) -> list[Event]:
        """The events to send outside for one admitted event: itself, and/or a new status."""
        match event:
            case Status():
                self.status = event
                return [self._merged(event)]
            case Battery():
                self.battery = event
                return [event, self._merged(self.status)]
            case Camera():
                self.camera = event
                return [self._merged(self.status)]
        return [event]

    def _merged(self, status: Status | None) -> Status:
        fields = (
            status.model_dump(exclude={"id", "timestamp_ms", "battery_pct", "camera_muted"})
            if status is not None
            else {"device_id": self.device_id, "state": "starting"}
        )
        if status is not None and self.battery is None and self.camera is None:
            return status  # nothing to add: keep its id, so a bus redelivery stays one event
        return Status(
            **fields,
            battery_pct=self.battery.pct if self.battery else None,
            camera_muted=self.camera.muted if self.camera else False,
        )
