-- Idempotent sends: one row per (sender, client_message_id). A resend after a lost echo finds the
-- original instead of storing a duplicate.
--
-- A database written before this index may already hold duplicates (a client that resent after a
-- lost echo). Every message is kept; the later copies lose their client_message_id (the earliest,
-- by (sent_at, id), keeps it), so the index can be built and a resend resolves to the first copy.
UPDATE channel_messages SET client_message_id = NULL
WHERE client_message_id IS NOT NULL
  AND EXISTS (
    SELECT 1 FROM channel_messages earlier
    WHERE earlier.sender_id = channel_messages.sender_id
      AND earlier.client_message_id = channel_messages.client_message_id
      AND (earlier.sent_at < channel_messages.sent_at
           OR (earlier.sent_at = channel_messages.sent_at AND earlier.id < channel_messages.id))
  );

CREATE UNIQUE INDEX IF NOT EXISTS channel_messages_sender_client_id
    ON channel_messages (sender_id, client_message_id)
    WHERE client_message_id IS NOT NULL;
