"""The benchmark harness itself: `python -m bench --quick --only gateway_overhead` runs end
to end (services in their own processes, h2load, results written), so it cannot rot.

The figures are not asserted (speed belongs in bench/, not in a test); what is asserted is
what a user of the harness relies on: the table, a results file with every field, and a
run that SIGTERM stops together with every process it started.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import pytest

from bench.scenarios.summaries import BEFORE_COMMIT
from tests.support.processes import left_running

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def _h2load() -> None:
    # A prerequisite like espeak-ng and sox (README; .ci/run installs it): a missing tool
    # fails loudly rather than skipping the harness's only test.
    if shutil.which("h2load") is None:
        pytest.fail("h2load missing: apt-get install -y nghttp2-client")


def _quick(scenario: str, results: Path) -> subprocess.CompletedProcess[str]:
    """Runs `python -m bench --quick --only SCENARIO`; fails the test if the run fails."""
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench",
            "--quick",
            "--only",
            scenario,
            "--results-dir",
            str(results),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done


def test_quick_gateway_overhead_writes_results(tmp_path: Path) -> None:
    done = _quick("gateway_overhead", tmp_path)
    assert "gateway_overhead" in done.stdout

    document = json.loads((tmp_path / "results" / "latest.json").read_text())
    (result,) = document["scenarios"]
    assert result["name"] == "gateway_overhead"
    assert result["unit"] == "req/s"
    assert result["value"] > 0
    assert result["reference"] > 0
    assert result["ratio"] == pytest.approx(result["value"] / result["reference"], rel=0.01)
    assert isinstance(result["met"], bool)
    assert result["goal"]
    assert result["details"]["gateway_failed"] == 0
    assert result["details"]["direct_failed"] == 0
    assert document["machine"]["cores"] >= 1

    markdown = (tmp_path / "RESULTS.md").read_text()
    assert "| `gateway_overhead` |" in markdown
    assert "--only gateway_overhead" in markdown


def test_quick_proxy_overhead_measures_all_three_paths(tmp_path: Path) -> None:
    # Every timed stream must bring the direct stream's segments or the run fails, so a
    # zero exit means both hops carried every segment of every stream.
    _quick("proxy_overhead", tmp_path)

    (result,) = json.loads((tmp_path / "results" / "latest.json").read_text())["scenarios"]
    details = result["details"]
    # The subject is the proxy, the reference the bare hop; the direct time is beside them.
    assert "bare gRPC hop" in result["goal"]
    assert isinstance(result["met"], bool)
    assert result["ratio"] == pytest.approx(result["value"] / result["reference"], rel=0.01)
    assert details["proxy_over_direct"] == pytest.approx(
        result["value"] / details["direct_ms"], rel=0.01
    )
    assert details["bare_hop_over_direct"] == pytest.approx(
        result["reference"] / details["direct_ms"], rel=0.01
    )
    # Each path's CPU is reported: the node's on all three, the hops' own.
    for key in (
        "client_cpu_ms_per_stream",
        "proxy_cpu_ms_per_stream",
        "bare_hop_cpu_ms_per_stream",
        "node_cpu_ms_per_stream_direct",
        "node_cpu_ms_per_stream_through_proxy",
        "node_cpu_ms_per_stream_through_bare_hop",
    ):
        assert details[key] >= 0, key
    assert details["rounds"] == 18
    assert "bare hop" in result["limits"]

    markdown = (tmp_path / "RESULTS.md").read_text()
    assert "| `proxy_overhead` |" in markdown


def test_unknown_scenario_is_refused_with_the_list() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--only", "no_such_scenario"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert "gateway_overhead" in done.stderr


def test_sigterm_stops_a_run_and_every_process_it_started(tmp_path: Path) -> None:
    # A CI job's timeout or `kill` sends SIGTERM; the run must stop the services,
    # SeaweedFS and PostgreSQL it started and remove its directory (bench/signals.py),
    # not die and leave them running.
    earlier = _work_dirs()
    run = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bench",
            "--quick",
            "--only",
            "upload_s3",
            "--results-dir",
            str(tmp_path),
        ],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        started = _once_a_service_runs(psutil.Process(run.pid), within=120)
        ours = _work_dirs() - earlier  # PostgreSQL's data directory is in it
        run.send_signal(signal.SIGTERM)
        assert run.wait(timeout=60) == 130
    finally:
        if run.poll() is None:
            run.kill()
    assert ours
    assert [p for d in ours for p in left_running(started, d)] == []
    assert not any(d.exists() for d in ours)
    assert not (tmp_path / "results" / "latest.json").exists()


def _work_dirs() -> set[Path]:
    return set(Path(tempfile.gettempdir()).glob("mesh-bench-*"))


def _once_a_service_runs(bench: psutil.Process, within: float) -> list[psutil.Process]:
    """The bench's child processes, once one of them is a mesh service."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        children: list[psutil.Process] = bench.children(recursive=True)
        if any("bench.serve" in _cmdline(p) for p in children):
            return children
        time.sleep(0.1)
    raise AssertionError("the bench started no service")


def _cmdline(process: psutil.Process) -> list[str]:
    try:
        cmdline: list[str] = process.cmdline()
    except psutil.Error:
        return []
    return cmdline


def test_summaries_scores_before_and_now_and_checks_the_llm_fallback(tmp_path: Path) -> None:
    # The before engine comes from the repository's history (`git show`); a shallow clone
    # scores only now. The fallback checks run against a loopback stub.
    has_before = (
        subprocess.run(
            ["git", "-C", str(REPO), "cat-file", "-e", f"{BEFORE_COMMIT}^{{commit}}"],
            capture_output=True,
            check=False,
        ).returncode
        == 0
    )
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench",
            "--quick",
            "--only",
            "summaries",
            "--results-dir",
            str(tmp_path),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={k: v for k, v in os.environ.items() if k != "MESH_SUMMARY_LLM_URL"},
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    (result,) = json.loads((tmp_path / "results" / "latest.json").read_text())["scenarios"]
    assert result["name"] == "summaries"
    details = result["details"]
    for engine in ("before", "now") if has_before else ("now",):
        for subset in ("all", "tuned", "held_out"):
            assert 0 <= details[f"{engine}_{subset}_items_recall"] <= 1
    assert details["now_held_out_f1"] > 0
    assert not any(key.startswith("llm_") for key in details)
    fallback = [c for c in result["checks"] if "fallback" in c["what"] or "quot" in c["what"]]
    assert len(fallback) == 4
    assert all(c["met"] for c in fallback), fallback
    assert "MESH_SUMMARY_LLM_URL is not set" in result["limits"]
