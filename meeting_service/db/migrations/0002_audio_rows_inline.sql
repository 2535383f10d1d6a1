-- Audio is now stored in rows of at most 8,000 bytes (one heap page each), inline and
-- uncompressed: PostgreSQL writes those far cheaper than large values cut into TOAST
-- tuples. Rows stored before keep their TOAST values and read the same.
ALTER TABLE audio_chunks ALTER COLUMN data SET STORAGE PLAIN;
