"""`pendant doctor`: what this pendant has, what is wrong with it, and the one-line fix for each.

One line per check: `OK`, `WARN` or `FAIL`, the part, what was found and, after `->`, what to
do. Each check looks and never changes anything: the hardware, models and install
(`hardware`), the clock (`clock`), under-voltage and throttling (`power`), the logins to the
brokers and the link's connection to the home broker (`brokers`). A check that cannot run here
says so instead of failing. The exit code is 1 when any line is FAIL, else 0, so an image build
or a support script can use it; a check that raises is one WARN line, never a traceback.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from pendant.app.doctor.brokers import check_brokers
from pendant.app.doctor.clock import check_clock
from pendant.app.doctor.finding import Finding, Verdict
from pendant.app.doctor.hardware import (
    check_accelerator,
    check_battery,
    check_camera,
    check_gpio,
    check_install,
    check_mic,
    check_models,
)
from pendant.app.doctor.power import check_power
from pendant.core.config import Config

__all__ = ["CHECKS", "Finding", "Verdict", "diagnose", "main"]

CHECKS: tuple[Callable[[Config], Iterator[Finding]], ...] = (
    check_install,
    check_mic,
    check_camera,
    check_accelerator,
    check_gpio,
    check_battery,
    check_power,
    check_clock,
    check_models,
    check_brokers,
)


def diagnose(
    config: Config, checks: tuple[Callable[[Config], Iterator[Finding]], ...] = CHECKS
) -> Iterator[Finding]:
    """Every check's findings, as they come."""
    for check in checks:
        try:
            yield from check(config)
        except Exception as exc:  # a doctor must finish its round whatever one check does
            part = check.__name__.removeprefix("check_")
            yield Finding(part, "WARN", f"check failed: {exc!r}", "report this")


def main(config: Config) -> int:
    """`pendant doctor`: prints each finding as it comes; returns 1 if any FAILed, else 0."""
    failed = False
    for finding in diagnose(config):
        print(finding.line(), flush=True)
        failed = failed or finding.verdict == "FAIL"
    return 1 if failed else 0
