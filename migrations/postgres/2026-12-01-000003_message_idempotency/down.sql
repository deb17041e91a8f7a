-- The client_message_id cleared on later duplicates by up.sql is not restored.
DROP INDEX IF EXISTS channel_messages_sender_client_id;
