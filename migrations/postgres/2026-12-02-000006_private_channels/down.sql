DROP TABLE channel_generation_envelopes;
DROP TABLE channel_members;
DROP INDEX channels_direct_pair;
ALTER TABLE channels DROP COLUMN direct_pair;
ALTER TABLE channels DROP COLUMN rotation_required;
ALTER TABLE channels DROP COLUMN key_generation;
ALTER TABLE channels DROP COLUMN kind;
