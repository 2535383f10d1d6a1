"""Helpers shared by every service: settings, logging, telemetry, auth, TLS, errors, streams.

Services never import each other; this package and `gen/` are all they share. It imports
no service package and no web framework (tests/test_layers.py checks both).
"""
