"""The `meeting-mesh` command: subcommands that run each service, the dev mesh, tokens, certs.

The one package above the services: it may start any of them, and none of them imports it.
"""
