"""API keys: credentials of server-to-server callers (docs/security.md)."""
