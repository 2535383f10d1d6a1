-- A live recording in object storage that stops before it is complete keeps the bytes it
-- held below one multipart part as an object of their own (`<key>.tail-<stored_size>`),
-- since S3 takes a part that small only as the last one: `staged_size` of `stored_size`
-- are there, not in the parts, and the stream that resumes the recording reads them back.
ALTER TABLE uploads ADD COLUMN staged_size bigint NOT NULL DEFAULT 0;
