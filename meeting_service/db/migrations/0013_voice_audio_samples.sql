-- Voice samples from recordings of a voice alone (CreateVoiceProfileFromAudio, AddVoiceAudio):
-- they come from no meeting, so a sample gets an id of its own and names a meeting's
-- speaker only when it was made from one (then at most once per profile).

ALTER TABLE voice_samples DROP CONSTRAINT voice_samples_pkey;
ALTER TABLE voice_samples
    ADD COLUMN id uuid NOT NULL DEFAULT gen_random_uuid(),
    ALTER COLUMN meeting_id DROP NOT NULL,
    ALTER COLUMN label DROP NOT NULL,
    ADD CONSTRAINT voice_samples_source CHECK ((meeting_id IS NULL) = (label IS NULL));
ALTER TABLE voice_samples ADD PRIMARY KEY (id);
CREATE UNIQUE INDEX voice_samples_meeting_speaker ON voice_samples (profile_id, meeting_id, label)
    WHERE meeting_id IS NOT NULL;
CREATE INDEX voice_samples_profile ON voice_samples (profile_id);
