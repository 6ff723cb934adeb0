"""gpiozero pin factories, chosen by `body.pin_factory`: 'lgpio' on the pendant, 'mock' elsewhere.

Registered in pendant.core.backends (`PIN_FACTORIES`) as the functions below that build them;
lgpio is imported only when asked for, so the package imports on any machine. Under systemd
it has one trap: its C library makes its notification pipes (`.lgd-nfy<n>`) in the directory
named by $LG_WD, else in the working directory, which is `/` and read-only for a hardened
unit. The unit sets LG_WD and WorkingDirectory; `prepare_lgpio_workdir` makes sure of it
before lgpio is imported, and says clearly when there is nowhere to put them.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import MutableMapping, Sequence
from pathlib import Path
from typing import Any

from pendant.core.backends import PIN_FACTORIES
from pendant.core.errors import BackendUnavailable

log = logging.getLogger(__name__)

LG_WD = "LG_WD"


def _writable_dir(path: str | Path | None) -> Path | None:
    if not path:
        return None
    p = Path(path)
    return p if p.is_dir() and os.access(p, os.W_OK | os.X_OK) else None


def lgpio_workdir_candidates(environ: MutableMapping[str, str]) -> list[str | None]:
    """Private, writable places, best first: the unit's RuntimeDirectory=, then the user's."""
    runtime = environ.get("RUNTIME_DIRECTORY", "")
    return [runtime.split(":")[0] or None, environ.get("XDG_RUNTIME_DIR")]


def prepare_lgpio_workdir(
    environ: MutableMapping[str, str] | None = None,
    candidates: Sequence[str | Path | None] | None = None,
    temp_root: str | Path | None = None,
) -> Path:
    """Point $LG_WD at a writable directory before lgpio is imported; return it.

    A writable $LG_WD is kept. Otherwise the first writable candidate is used, and failing
    those a new private (0700) directory under the temp root: a shared /tmp must not hold
    pipes another user could have made first.
    """
    environ = os.environ if environ is None else environ
    given = environ.get(LG_WD)
    if given and _writable_dir(given) is not None:
        return Path(given)
    if given:
        log.warning("%s=%s is not a writable directory: lgpio's pipes go elsewhere", LG_WD, given)
    for candidate in lgpio_workdir_candidates(environ) if candidates is None else candidates:
        found = _writable_dir(candidate)
        if found is not None:
            environ[LG_WD] = str(found)
            return found
    root = temp_root if temp_root is not None else tempfile.gettempdir()
    if _writable_dir(root) is not None:
        found = Path(tempfile.mkdtemp(prefix="pendant-lgpio-", dir=root))
        environ[LG_WD] = str(found)
        return found
    raise BackendUnavailable(
        "GPIO: lgpio needs a writable directory for its notification pipes and there is none: "
        f"set {LG_WD} (the unit sets {LG_WD}=/run/pendant-body with RuntimeDirectory=)"
    )


def mock_factory() -> Any:
    """gpiozero's mock pins, every one able to do PWM: nothing wired (simulation, tests)."""
    from gpiozero.pins.mock import MockFactory, MockPWMPin

    # Every mock pin can do PWM, so the LED and the haptic motor work as on the Pi.
    return MockFactory(pin_class=MockPWMPin)


def lgpio_factory() -> Any:
    """The pendant's GPIO chip through lgpio; BackendUnavailable says why not."""
    prepare_lgpio_workdir()
    try:
        from gpiozero.pins.lgpio import LGPIOFactory
    except ImportError as exc:
        raise BackendUnavailable(
            f"body.pin_factory 'lgpio': cannot import lgpio ({exc}); on the pendant install "
            'pendant[device], elsewhere set body.pin_factory = "mock"'
        ) from None
    try:
        return LGPIOFactory()
    except Exception as exc:  # lgpio.error and OSError: no chip, or no access to it
        raise BackendUnavailable(
            f"body.pin_factory 'lgpio': cannot open the GPIO chip: {exc} (is this a Raspberry "
            "Pi, and is the service in group gpio?)"
        ) from None


def create_pin_factory(kind: str) -> Any:
    """A gpiozero pin factory of the configured kind; BackendUnavailable says why not."""
    return PIN_FACTORIES.load(kind)()
