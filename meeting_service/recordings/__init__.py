"""Recordings: uploads stored as they arrive, probed, decoded, and completed with their job."""
