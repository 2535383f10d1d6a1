"""Memory (RSS) and open file descriptors of every process, sampled from /proc.

Each run of a process (a PID) is judged on its own, since a restart starts afresh. The
bound: after a warm-up (the first `WARM_UP_S` of the run, or its first third when it
lived less than three times that), the peak RSS stays within `RSS_FACTOR` x the warm-up's
peak + `RSS_SLACK_MIB`, and the peak count of open file descriptors within `FD_FACTOR` x
the warm-up's peak + `FD_SLACK`. A leak that grows with the requests served breaks it over
a long run; a process's ordinary churn (buffers, a burst of connections) does not. For
PostgreSQL the postmaster is sampled (its backends come and go with connections).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from dataclasses import dataclass, field

WARM_UP_S = 60.0
RSS_FACTOR = 1.5
RSS_SLACK_MIB = 64.0
FD_FACTOR = 1.5
FD_SLACK = 32
BOUND = (
    f"after a warm-up (the first {WARM_UP_S:.0f} s of each process's run, or its first third "
    f"if shorter), peak RSS <= {RSS_FACTOR}x the warm-up peak + {RSS_SLACK_MIB:.0f} MiB and "
    f"peak open FDs <= {FD_FACTOR}x the warm-up peak + {FD_SLACK}"
)


@dataclass(frozen=True)
class Sample:
    at: float
    rss_mib: float
    fds: int


@dataclass
class Run:
    """One process's samples (one PID of one name)."""

    name: str
    pid: int
    samples: list[Sample] = field(default_factory=list)

    def verdict(self) -> tuple[bool, str]:
        """Whether this run stayed bounded, and its figures (warm-up peak -> later peak)."""
        if len(self.samples) < 3:
            return True, "too short to judge"
        first, last = self.samples[0].at, self.samples[-1].at
        warm_until = first + min(WARM_UP_S, (last - first) / 3)
        warm = [s for s in self.samples if s.at <= warm_until]
        later = [s for s in self.samples if s.at > warm_until] or warm
        warm_rss, later_rss = max(s.rss_mib for s in warm), max(s.rss_mib for s in later)
        warm_fds, later_fds = max(s.fds for s in warm), max(s.fds for s in later)
        ok = (
            later_rss <= RSS_FACTOR * warm_rss + RSS_SLACK_MIB
            and later_fds <= FD_FACTOR * warm_fds + FD_SLACK
        )
        figures = (
            f"RSS {warm_rss:.0f}→{later_rss:.0f} MiB, FDs {warm_fds}→{later_fds} "
            f"over {last - first:.0f} s"
        )
        return ok, figures


def sample(pid: int, at: float) -> Sample | None:
    """RSS and open FDs of `pid` now (None when it is gone)."""
    try:
        with open(f"/proc/{pid}/status") as status:
            rss_kib = next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))
        fds = len(os.listdir(f"/proc/{pid}/fd"))
    except (FileNotFoundError, ProcessLookupError, StopIteration):
        return None
    return Sample(at, rss_kib / 1024, fds)


class Sampler:
    """Samples every running process every `every_s` seconds until cancelled.

    Args:
        pids: Returns the running processes by name.
        every_s: The sampling period.
    """

    def __init__(self, pids: Callable[[], dict[str, int]], every_s: float = 2.0) -> None:
        self._pids = pids
        self._every_s = every_s
        self.runs: dict[tuple[str, int], Run] = {}

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            now = loop.time()
            for name, pid in self._pids().items():
                taken = sample(pid, now)
                if taken is not None:
                    self.runs.setdefault((name, pid), Run(name, pid)).samples.append(taken)
            await asyncio.sleep(self._every_s)
