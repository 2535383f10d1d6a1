"""Calling the GPU service (`gpu.v1`, served by gpu_proxy and by gpu nodes) from a service.

It depends only on the contract and `mesh_common`, so a caller needs nothing of gpu_proxy.
"""

from gpu_client.calls import diarize, recognize
from gpu_client.capabilities import FleetCapabilities
from gpu_client.channel import GpuStubs, connect
from gpu_client.connection import GpuConnection, GpuNotConfigured, GpuUnreachable

__all__ = [
    "FleetCapabilities",
    "GpuConnection",
    "GpuNotConfigured",
    "GpuStubs",
    "GpuUnreachable",
    "connect",
    "diarize",
    "recognize",
]
