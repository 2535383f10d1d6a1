-- Recordings kept in S3-compatible object storage: the open multipart upload of a
-- recording being received and the ETags of the parts it durably holds, in part order.
-- `stored_size` counts only those parts' bytes, so a resumed upload continues after them.
ALTER TABLE uploads
    ADD COLUMN object_upload_id text,
    ADD COLUMN part_etags text[] NOT NULL DEFAULT '{}';

CREATE INDEX uploads_object_upload_id ON uploads (object_upload_id)
    WHERE object_upload_id IS NOT NULL;
