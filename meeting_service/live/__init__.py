"""LiveTranscribe: live audio in, transcript events out, then a job for speakers and summary."""
