"""CPU time and resident memory of a process and its descendants, read from /proc.

``/proc/<pid>/stat`` of a process already sums the CPU time of all its threads (aiortc
encodes and decodes in threads), and ``cutime``/``cstime`` cover reaped children; live
descendants (a server that forks workers) are added by walking the parent links.
"""

from __future__ import annotations

import os
from pathlib import Path

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def _stat_fields(pid: int) -> list[str] | None:
    """Fields of /proc/<pid>/stat after the command name (index 0 is the state)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rindex(")") + 2 :].split()


def descendants(pid: int) -> list[int]:
    """``pid`` and every live process below it."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        fields = _stat_fields(int(entry.name))
        if fields is not None:
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    found = [pid]
    index = 0
    while index < len(found) and index < 10_000:
        found.extend(children.get(found[index], []))
        index += 1
    return found


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of ``pid``'s tree (threads and reaped children included)."""
    return sum(cpu_seconds_each(pid).values())


def cpu_seconds_each(pid: int) -> dict[int, float]:
    """User + system CPU seconds of each live process of ``pid``'s tree, by PID (its
    threads and reaped children included)."""
    seconds: dict[int, float] = {}
    for member in descendants(pid):
        fields = _stat_fields(member)
        if fields is None:
            continue
        # utime, stime, cutime, cstime are stat fields 14-17; index 0 here is field 3.
        seconds[member] = sum(int(value) for value in fields[11:15]) / CLOCK_TICKS
    return seconds


def rss_kib(pid: int) -> int:
    """Summed VmRSS (KiB) of ``pid``'s tree."""
    total = 0
    for member in descendants(pid):
        try:
            status = Path(f"/proc/{member}/status").read_text()
        except OSError:
            continue
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1])
                break
    return total
