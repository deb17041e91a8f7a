-- Trust v2 signed profiles (docs/TRUST.md §6.4): the device that signed a user's profile and its
-- Ed25519 signature over (user id, device id, name_enc). Both NULL for a v1 client's profile.
ALTER TABLE user_profiles ADD COLUMN signer_device_id TEXT;
ALTER TABLE user_profiles ADD COLUMN signature TEXT;
