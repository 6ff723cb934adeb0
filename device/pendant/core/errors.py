"""One exception tree. Leaves also inherit a builtin so callers can catch either.

Every message is one line that names what to fix; the CLI prints it without a traceback.
"""


class PendantError(Exception):
    """Base of every error the pendant raises on purpose."""


class ConfigError(PendantError, ValueError):
    """The config file is missing, unreadable or invalid."""


class AudioFormatError(PendantError, ValueError):
    """An audio file or stream that cannot be turned into 16 kHz mono int16."""


class ModelError(PendantError, FileNotFoundError):
    """A model file is missing or does not match its pinned sha256."""


class BackendUnavailable(PendantError, ImportError):
    """A configured hardware or model backend cannot be imported here."""


class BusError(PendantError, ConnectionError):
    """The device-local broker cannot be reached."""
