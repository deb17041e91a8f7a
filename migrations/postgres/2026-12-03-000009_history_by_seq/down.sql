CREATE INDEX IF NOT EXISTS channel_messages_channel_time ON channel_messages (channel_id, sent_at, id);
