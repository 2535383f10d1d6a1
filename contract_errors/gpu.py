"""The errors of the GPU contract, raised by gpu_node and by gpu_proxy.

Each reason's gRPC code and retryability are declared on its `gpu.v1.ErrorReason` value in
proto/gpu/v1/gpu.proto.
"""

from __future__ import annotations

from gen.gpu.v1 import gpu_pb2
from mesh_common.errors import MeshError


class GpuError(MeshError, reasons=gpu_pb2.ErrorReason):
    """An error of the GPU contract; `reason` is a `gpu.v1.ErrorReason` value."""
