"""What a node's failed call says about the node.

Which failures may be tried again on another node, how long to wait, and the status
grpc.aio loses in a write race (`effective_code`) are the mesh's one retry policy
(`mesh_common.retry`); here is what is particular to nodes: which codes count against a
node's breaker.
"""

from __future__ import annotations

import grpc

# Codes that say the node (not the request) failed; they count against its breaker.
NODE_FAILURES = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED})
