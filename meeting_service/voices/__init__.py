"""Voice profiles: named voices a caller keeps, matched to the speakers of later meetings."""
