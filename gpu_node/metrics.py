"""The node's own Prometheus series, read from `Admission` when scraped.

- `mesh_gpu_node_calls_in_flight{method}` and `mesh_gpu_node_call_limit{lane}`: what the node is
  doing against what it admits;
- `mesh_gpu_node_calls_started_total{method}` and `mesh_gpu_node_audio_bytes_total{method}`:
  the work it took on.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from gpu_node.admission import Admission
from mesh_common.lanes import LANES

METHODS = ("Recognize", "Diarize", "Summarize")


class AdmissionCollector(Collector):
    """Reports a node's admission counters at scrape time (nothing to keep in step).

    Args:
        admission: The node's admission control.
    """

    def __init__(self, admission: Admission) -> None:
        self._admission = admission

    def collect(self) -> Iterator[Metric]:
        """Yields the series above."""
        admission = self._admission
        in_flight = GaugeMetricFamily(
            "mesh_gpu_node_calls_in_flight", "Calls being served.", labels=["method"]
        )
        started = CounterMetricFamily(
            "mesh_gpu_node_calls_started", "Calls admitted since start.", labels=["method"]
        )
        audio = CounterMetricFamily(
            "mesh_gpu_node_audio_bytes", "Audio bytes received since start.", labels=["method"]
        )
        for method in METHODS:
            in_flight.add_metric([method], admission.active[method])
            started.add_metric([method], admission.started[method])
            audio.add_metric([method], admission.audio_bytes[method])
        yield in_flight
        yield started
        yield audio
        limit = GaugeMetricFamily(
            "mesh_gpu_node_call_limit", "Most calls served at once, per lane.", labels=["lane"]
        )
        for lane in LANES:
            limit.add_metric([lane], admission.limits[lane])
        yield limit
