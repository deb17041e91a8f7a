-- Irreversible on an upgraded v1 database (it would drop the operator's data); on a fresh database
-- this removes what up.sql created.
DROP TABLE IF EXISTS server_invites;
DROP TABLE IF EXISTS directory_key_envelopes;
DROP TABLE IF EXISTS user_profiles;
DROP TABLE IF EXISTS channel_key_envelopes;
DROP TABLE IF EXISTS channel_messages;
DROP TABLE IF EXISTS channels;
DROP TABLE IF EXISTS broadcast_messages;
DROP TABLE IF EXISTS devices;
DROP TABLE IF EXISTS users;
