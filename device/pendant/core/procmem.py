"""Memory of processes as the kernel counts it: RSS, PSS and USS from /proc/<pid>/smaps_rollup.

RSS counts a shared page (libpython, numpy's libraries, ...) once in every process that maps it,
so RSS summed over the services overstates what the device holds. PSS divides each shared page
among the processes that map it, so PSS adds up across processes to the memory in use; USS (the
private pages) is what a process gives back when it exits. A service's figure is that of its
process tree: the ears' recogniser is a child process, and systemd's MemoryMax= counts it too.

Standard library only, so that `python -m pendant.core.procmem` runs anywhere the pendant is
installed (the image's boot test calls it in the guest, `pendant doctor` can use it):
it prints each pendant process tree's figures.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

PROC = Path("/proc")


class ProcMemError(OSError):
    """A process's memory could not be read (it is gone, /proc lacks smaps_rollup, no access)."""


@dataclass(frozen=True)
class Memory:
    """One process's (or a tree's) memory, in kB as the kernel reports it."""

    rss_kb: int = 0
    pss_kb: int = 0
    uss_kb: int = 0
    swap_pss_kb: int = 0

    def __add__(self, other: Memory) -> Memory:
        return Memory(
            self.rss_kb + other.rss_kb,
            self.pss_kb + other.pss_kb,
            self.uss_kb + other.uss_kb,
            self.swap_pss_kb + other.swap_pss_kb,
        )

    @property
    def rss_mb(self) -> float:
        return round(self.rss_kb / 1024, 1)

    @property
    def pss_mb(self) -> float:
        return round(self.pss_kb / 1024, 1)

    @property
    def uss_mb(self) -> float:
        return round(self.uss_kb / 1024, 1)


def parse_rollup(text: str) -> Memory:
    """The figures of one smaps_rollup text (USS: Private_Clean + Private_Dirty + hugetlb)."""
    fields: dict[str, int] = {}
    for line in text.splitlines():
        key, sep, rest = line.partition(":")
        parts = rest.split()
        if sep and len(parts) == 2 and parts[1] == "kB":
            fields[key] = int(parts[0])
    if "Pss" not in fields or "Rss" not in fields:
        raise ProcMemError("smaps_rollup holds no Rss/Pss lines (not a Linux /proc?)")
    private = ("Private_Clean", "Private_Dirty", "Private_Hugetlb")
    return Memory(
        rss_kb=fields["Rss"],
        pss_kb=fields["Pss"],
        uss_kb=sum(fields.get(k, 0) for k in private),
        swap_pss_kb=fields.get("SwapPss", 0),
    )


def memory(pid: int, proc: Path = PROC) -> Memory:
    """Process `pid`'s own memory; ProcMemError naming the file when it cannot be read."""
    path = proc / str(pid) / "smaps_rollup"
    try:
        text = path.read_text()
    except FileNotFoundError:
        if (proc / str(pid)).exists():
            raise ProcMemError(
                f"{path} is missing: this kernel has no smaps_rollup (< 4.14)"
            ) from None
        raise ProcMemError(f"no process {pid} ({path} is missing)") from None
    except PermissionError:
        raise ProcMemError(
            f"{path}: permission denied (run as the process's user or root)"
        ) from None
    except ProcessLookupError:
        raise ProcMemError(f"no process {pid} (it exited)") from None
    if not text:  # a kernel thread, or a process exiting as it was read
        return Memory()
    return parse_rollup(text)


def parents(proc: Path = PROC) -> dict[int, int]:
    """Every process's parent pid, from /proc/<pid>/stat."""
    out: dict[int, int] = {}
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue  # exited while listed
        # The name (field 2) is in brackets and may hold spaces or brackets itself.
        out[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    return out


def tree(pid: int, proc: Path = PROC) -> list[int]:
    """`pid` and all its descendants, `pid` first."""
    children: dict[int, list[int]] = {}
    for child, parent in parents(proc).items():
        children.setdefault(parent, []).append(child)
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(sorted(children.get(p, ())))
    return out


def tree_memory(pid: int, proc: Path = PROC) -> Memory:
    """The memory of `pid` and its descendants together; ProcMemError if `pid` is gone (a child
    that exits while read counts as nothing)."""
    total = memory(pid, proc)
    for child in tree(pid, proc)[1:]:
        try:
            total = total + memory(child, proc)
        except ProcMemError:
            continue
    return total


def command_line(pid: int, proc: Path = PROC) -> list[str]:
    """Process `pid`'s argv ([] once it is gone, or for a kernel thread)."""
    try:
        raw = (proc / str(pid) / "cmdline").read_bytes()
    except OSError:
        return []
    return [a.decode(errors="replace") for a in raw.split(b"\0") if a]


def service_name(argv: list[str]) -> str | None:
    """The pendant service a command line runs (`pendant ... service NAME`, `-m pendant.web`)."""
    if "service" in argv[:-1] and any("pendant" in a for a in argv):
        return argv[argv.index("service") + 1]
    if "pendant.web" in argv:
        return "web"
    return None


def pendant_services(proc: Path = PROC) -> dict[str, int]:
    """The main pid of each pendant service running here, by service name."""
    found: dict[str, int] = {}
    for pid in sorted(int(e.name) for e in proc.iterdir() if e.name.isdigit()):
        name = service_name(command_line(pid, proc))
        if name and name not in found:
            found[name] = pid
    return found


def main() -> int:
    """Prints each running pendant service's PSS, USS and RSS (its process tree), and the total."""
    services = pendant_services()
    if not services:
        print("procmem: no pendant service is running", file=sys.stderr)
        return 1
    total = Memory()
    print(f"{'service':<10} {'pid':>7} {'PSS MB':>8} {'USS MB':>8} {'RSS MB':>8}")
    for name, pid in sorted(services.items()):
        try:
            m = tree_memory(pid)
        except ProcMemError as exc:
            print(f"{name:<10} {pid:>7} {exc}")
            continue
        total = total + m
        print(f"{name:<10} {pid:>7} {m.pss_mb:>8} {m.uss_mb:>8} {m.rss_mb:>8}")
    print(f"{'total':<10} {'':>7} {total.pss_mb:>8} {total.uss_mb:>8} {total.rss_mb:>8}")
    return 0


if __name__ == "__main__":
    # Someone else's /proc/<pid>/smaps_rollup needs their uid or root: say so once, not per line.
    if os.geteuid() != 0:
        print("procmem: not root; other users' services will be unreadable", file=sys.stderr)
    raise SystemExit(main())
