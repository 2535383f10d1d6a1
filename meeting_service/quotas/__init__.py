"""Per-caller quotas (docs/security.md)."""
