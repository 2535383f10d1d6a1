"""The chaos soak's short version: every check of `python -m bench.chaos` holds.

Ninety seconds of mixed load (uploads, some cut and resumed; live WebSocket sessions; SSE
subscribers; CRUD) on two of every service over one PostgreSQL and one SeaweedFS, while
a process is SIGKILLed every 18 s and started again, each kind (PostgreSQL too) at least
once. docs/bench.md ("Chaos soak") describes the checks; the README says how to run the
30-minute version.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.chaos.report import to_json, to_markdown
from bench.chaos.soak import Options, soak


# About 140 s on an idle 2-core machine; a busy one restarts processes far more slowly.
@pytest.mark.timeout(900)
async def test_a_short_chaos_soak_loses_nothing_and_fails_only_in_kill_windows(
    tmp_path: Path,
) -> None:
    outcome = await soak(Options(duration_s=90, kill_every_s=18, seed=7), keep_logs=tmp_path)
    table = to_markdown(to_json(outcome, "tests/test_chaos.py", {"cores": "-", "cpu": "-"}))
    assert outcome.passed, table
