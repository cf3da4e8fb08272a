"""What a process has used: its peak resident memory and its CPU time, read from ``/proc`` (Linux).

One place for the reader process's own report (`gateway.pipeline.reading`), the benchmarks and the
memory tests. ``VmHWM`` rather than ``getrusage``'s ``ru_maxrss``, which a process started by
fork + exec inherits from its parent, and which cannot be reset; ``getrusage`` is the fallback where
there is no ``/proc``.
"""

from __future__ import annotations

import os
import resource
from pathlib import Path


def rss_bytes() -> int:
    """This process's resident memory now, in bytes (``/proc/self/statm``)."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def reset_peak() -> None:
    """Forget this process's peak so far, so that the next reading is what follows (Linux: ``5`` to
    ``/proc/self/clear_refs``; elsewhere the peak stays, which only makes a bound looser)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


def peak_rss_bytes(pid: int | str = "self") -> int | None:
    """The peak resident memory of ``pid`` (this process by default) since it started or since the last
    `reset_peak`, in bytes; ``None`` for another process whose ``/proc`` entry cannot be read."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 if pid == "self" else None


def cpu_seconds(pid: int, *, reaped_children: bool = False, thread: int | None = None) -> float:
    """User + system CPU time ``pid`` has used so far (NaN if it cannot be read): a figure that other
    processes on a shared machine do not inflate, unlike wall time. ``reaped_children``: with the time
    of its children that have ended and been waited for (a PostgreSQL server's finished backends).
    ``thread``: that thread's alone (its native id; `bench/timeline.py`)."""
    stat = f"/proc/{pid}/stat" if thread is None else f"/proc/{pid}/task/{thread}/stat"
    try:
        fields = Path(stat).read_text().rsplit(")", 1)[1].split()
        return sum(int(v) for v in fields[11:15 if reaped_children else 13]) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return float("nan")


def process_tree(pid: int) -> list[int]:
    """``pid`` and its descendants alive now (Linux ``/proc``; just ``[pid]`` elsewhere): the processes
    of ``gateway serve --workers N`` under their supervisor, for instance."""
    found, queue = [], [pid]
    while queue:
        current = queue.pop()
        found.append(current)
        try:
            for task in Path(f"/proc/{current}/task").iterdir():
                queue.extend(int(child) for child in (task / "children").read_text().split())
        except OSError:
            continue
    return found
