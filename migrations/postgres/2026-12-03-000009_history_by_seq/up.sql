-- History pages in seq order (a message-id cursor is resolved to its message's seq), so the
-- (channel_id, sent_at, id) index no longer serves any query; (channel_id, seq) does. Every
-- committed message paid for the dropped index in the group commit's insert.
-- Looked up by definition as well as by name: a database upgraded from dialtone v1 may name it
-- differently.
DROP INDEX IF EXISTS channel_messages_channel_time;
DO $$
DECLARE i record;
BEGIN
  FOR i IN SELECT indexname FROM pg_indexes
           WHERE schemaname = current_schema() AND tablename = 'channel_messages'
             AND indexdef LIKE '%(channel_id, sent_at, id)'
  LOOP
    EXECUTE format('DROP INDEX %I', i.indexname);
  END LOOP;
END $$;
