"""Meetings: the root aggregate; create, read, list, update with a mask, delete, owner-scoped."""
