"""Each contract's error type and the errors built in more than one place, by name.

A contract declares its reasons and how each is reported (`(mesh.v1.error)` on its
`ErrorReason` values); `mesh_common.errors` reads that table without knowing any contract.
This package binds one `MeshError` subclass to each contract's enum, so the service that
serves a contract and the callers that answer for it (the gateway renders meeting errors
it detects itself) raise the same error with the same constructor.
"""
