"""Cross-cutting helpers shared by every service: settings, logging, auth, TLS, errors.

Services never import each other; this package and `gen/` are all they share.
"""
