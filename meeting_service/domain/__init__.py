"""Domain services: the rules of meetings, uploads and transcripts, above the repositories.

They raise `mesh_common.errors.MeshError` for anything a caller did wrong and know nothing
of gRPC beyond the generated message types they return.
"""
