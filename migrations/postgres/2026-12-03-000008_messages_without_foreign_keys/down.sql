DELETE FROM channel_messages m WHERE NOT EXISTS (SELECT 1 FROM channels c WHERE c.id = m.channel_id);
ALTER TABLE channel_messages
  ADD CONSTRAINT channel_messages_channel_id_fkey FOREIGN KEY (channel_id) REFERENCES channels(id) ON DELETE CASCADE,
  ADD CONSTRAINT channel_messages_sender_id_fkey FOREIGN KEY (sender_id) REFERENCES users(id);
