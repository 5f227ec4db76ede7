-- The SHA-256 of each endpoint's public key, so that an agent enrolling again with the key it
-- enrolled with (its first answer was lost) gets its own endpoint back, not a second one.
ALTER TABLE endpoints ADD COLUMN public_key_sha256 TEXT;
CREATE UNIQUE INDEX endpoints_public_key ON endpoints (public_key_sha256);
