"""What a node's failed call says about the node.

Which failures may be tried again on another node, and how long to wait, is the mesh's one
retry policy (`mesh_common.retry`); here is what is particular to nodes: which codes count
against a node's breaker, and the status grpc.aio loses in a write race.
"""

from __future__ import annotations

import grpc

# Codes that say the node (not the request) failed; they count against its breaker.
NODE_FAILURES = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED})


# What a grpc.aio client reports when the server ended a call while it was writing
# (grpc/grpc#36066): the real status is lost. Our nodes drain a stream before failing it,
# so for them this means the call ended abruptly (node killed, connection reset).
_LOST_STATUS_DETAILS = "Internal error from Core"


def effective_code(error: grpc.aio.AioRpcError) -> grpc.StatusCode:
    """Returns the status code a node's failed call stands for.

    Args:
        error: The failed call to the node.

    Returns:
        UNAVAILABLE for a status lost to the grpc.aio write race; the code otherwise.
    """
    code: grpc.StatusCode = error.code()
    if code is grpc.StatusCode.INTERNAL and error.details() == _LOST_STATUS_DETAILS:
        return grpc.StatusCode.UNAVAILABLE
    return code
