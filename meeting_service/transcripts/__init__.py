"""Transcripts: the event log of each meeting, written, read, and followed live.

`repository` owns the SQL and the sequence counter, `notifications` the NOTIFY payload,
`event_log` single events in a caller's transaction, `writer` segments by group commit,
`reader` the owner-scoped reads and streams, `hub` the process's LISTEN fan-out.
"""
