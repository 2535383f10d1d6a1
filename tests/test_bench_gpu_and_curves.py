"""`bench/gpu.sh` without a GPU, its Python part in dry-run mode, and the scaling curves.

None of it asserts a figure: the GPU script must explain itself where there is no GPU, run
end to end on the CPU when asked to, and the curves must be drawn from any results file.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from bench import curves

REPO = Path(__file__).resolve().parent.parent


def test_gpu_script_without_a_gpu_says_so_and_fails(tmp_path: Path) -> None:
    # An nvidia-smi that sees no device, whatever this machine has.
    fake = tmp_path / "nvidia-smi"
    fake.write_text("#!/bin/sh\necho 'NVIDIA-SMI has failed' >&2\nexit 9\n")
    fake.chmod(0o755)
    done = subprocess.run(
        ["bash", str(REPO / "bench" / "gpu.sh")],
        cwd=REPO,
        env={**os.environ, "PATH": f"{tmp_path}:{os.environ['PATH']}"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 3
    assert "no NVIDIA GPU here" in done.stderr
    assert "--dry-run" in done.stderr


def test_gpu_measurements_run_end_to_end_on_the_cpu_in_dry_run(tmp_path: Path) -> None:
    out = tmp_path / "gpu.json"
    done = subprocess.run(
        [sys.executable, "-m", "bench.gpu_asr", "--dry-run", "--out", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["dry_run"] is True and result["device"] == "cpu"
    figures = result["models"]["tiny.en"]
    assert figures["rtf_batch_1"] > 0 and figures["rtf_batched_2"] > 0
    assert figures["live_levels"][0]["streams"] == 1
    assert all(level["lines"] > 0 for level in figures["live_levels"])


def _scenarios() -> list[dict[str, object]]:
    point = {
        "nodes": 1,
        "callers": 8,
        "streams": 70,
        "streams_per_s": 17.5,
        "stream_cost_s": 0.2,
        "node_capacity_per_s": 20.0,
        "of_capacity": 0.875,
        "proxy_cpu_ms_per_stream": 4.3,
        "proxy_cores_busy": 0.08,
        "proxy_streams_per_core_s": 232.0,
        "nodes_cpu_ms_per_stream": 3.9,
        "client_cpu_ms_per_stream": 2.1,
    }
    ceiling = {**point, "nodes": 4, "stream_cost_s": 0.0, "node_capacity_per_s": 0.0}
    fanout = {
        "subscribers": 200,
        "events": 20,
        "events_per_s": 10.0,
        "p50_ms": 3.0,
        "p99_ms": 20.0,
        "gateway_kib_per_subscriber": 12.0,
        "messages_delivered": 4000,
        "messages_expected": 4000,
    }
    timing = {"p50_ms": 2.0, "p99_ms": 4.0}
    return [
        {
            "name": "gpu_scaling",
            "value": 17.5,
            "details": {
                "stream_cost_s": 0.2,
                "slots_per_node": 4,
                "points": [point],
                "ceiling": ceiling,
            },
        },
        {"name": "sse_fanout", "value": 20.0, "details": {"points": [fanout]}},
        {
            "name": "list_latency",
            "value": 2.0,
            "details": {
                "meetings": 10_000,
                "page_size": 10,
                "first_page": timing,
                "page_1000": timing,
                "get_meeting": timing,
                "walk_page_10_ms": 2.0,
                "walk_page_1000_ms": 2.1,
            },
        },
        {"name": "upload", "value": None, "details": {}},
    ]


def test_curves_are_written_as_a_table_and_a_plot(tmp_path: Path) -> None:
    written = curves.write(_scenarios(), tmp_path, "a note")
    assert {p.name for p in written} == {"scaling.md", "scaling.png"}
    table = (tmp_path / "scaling.md").read_text()
    assert "a note" in table
    assert "| 1 | 17.5 | 20.0 | 0.875 |" in table
    assert "| 200 | 10.0 | 3.0 | 20.0 | 12.0 | 4000/4000 |" in table
    assert "| page 1000 (by tokens) | 2.0 | 4.0 |" in table
    assert (tmp_path / "scaling.png").read_bytes().startswith(b"\x89PNG")


def test_no_curve_scenario_writes_nothing(tmp_path: Path) -> None:
    assert curves.write(_scenarios()[-1:], tmp_path, "a note") == []
