"""meeting_service."""
