DROP INDEX IF EXISTS channel_messages_channel_seq;
ALTER TABLE channel_messages DROP COLUMN IF EXISTS seq;
ALTER TABLE channels DROP COLUMN IF EXISTS last_seq;
