-- History pages in seq order (a message-id cursor is resolved to its message's seq), so the
-- (channel_id, sent_at, id) index no longer serves any query; (channel_id, seq) does.
DROP INDEX IF EXISTS channel_messages_channel_time;
