"""Which scope each RPC needs: the `(mesh.v1.scope)` option of its method (docs/security.md).

A user's token allows every scope; an API key allows those it was created with. The
option is read from the descriptors, so the table exists once, in the contract.
"""

from __future__ import annotations

from collections.abc import Mapping

from google.protobuf.descriptor import MethodDescriptor, ServiceDescriptor

from gen.mesh.v1 import auth_pb2


def method_scope(method: MethodDescriptor) -> str:
    """Returns the scope a method declares; "" when it declares none."""
    scope: str = method.GetOptions().Extensions[auth_pb2.scope]
    return scope


def method_scopes(*services: ServiceDescriptor) -> Mapping[str, str]:
    """Maps each method that declares a scope to it.

    Args:
        services: The services a server hosts.

    Returns:
        gRPC method path ("/meeting.v1.MeetingService/ListMeetings") -> scope.
    """
    return {
        f"/{service.full_name}/{method.name}": scope
        for service in services
        for method in service.methods
        if (scope := method_scope(method))
    }


def grantable_scopes(*services: ServiceDescriptor) -> frozenset[str]:
    """Returns the scopes an API key may hold: those some method of the services needs."""
    return frozenset(method_scopes(*services).values())
