DROP INDEX IF EXISTS channel_messages_channel_seq;
ALTER TABLE channel_messages DROP COLUMN seq;
ALTER TABLE channels DROP COLUMN last_seq;
