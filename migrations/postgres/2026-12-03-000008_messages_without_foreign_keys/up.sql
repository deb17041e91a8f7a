-- The group commit inserts up to DIALTONE_DB_BATCH_MAX messages per transaction, and each
-- foreign key on channel_messages ran one lookup per inserted row (a trigger's query on
-- channels and one on users): about half of a batch's insert time. The commit already holds
-- what those keys checked, so they go:
-- - channel_id: the commit locks each channel's counter row (SELECT ... FOR NO KEY UPDATE)
--   before it inserts, and a missing channel's rows are refused; a channel deletion takes the
--   row lock, so it waits for such a commit, and deletes the channel's messages itself in the
--   same transaction (db::channels::delete) instead of by ON DELETE CASCADE.
-- - sender_id: the sender is the authenticated user of the socket, and users are never deleted
--   (an account is disabled instead).
-- Looked up by definition rather than by name: a database upgraded from dialtone v1 may name
-- its constraints differently.
DO $$
DECLARE c record;
BEGIN
  FOR c IN SELECT conname FROM pg_constraint
           WHERE conrelid = 'channel_messages'::regclass AND contype = 'f'
  LOOP
    EXECUTE format('ALTER TABLE channel_messages DROP CONSTRAINT %I', c.conname);
  END LOOP;
END $$;
