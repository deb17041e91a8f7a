ALTER TABLE user_profiles DROP COLUMN signature;
ALTER TABLE user_profiles DROP COLUMN signer_device_id;
