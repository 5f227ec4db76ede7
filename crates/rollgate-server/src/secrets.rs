//! Secrets at rest: the CA's key and the admin token are stored in the database sealed with
//! XChaCha20-Poly1305 under a key that every replica is given (`--secret-key-file`). The
//! database alone, or a backup of it, does not reveal them.
//!
//! A sealed value is `v1:` + hex(nonce ‖ ciphertext). The slot name is the associated data, so
//! a sealed value moved to another slot does not open.

use std::path::Path;

use anyhow::{bail, Context};
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand::RngCore;

/// The key that seals secrets at rest.
pub struct SecretKey(XChaCha20Poly1305);

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretKey(..)")
    }
}

const PREFIX: &str = "v1:";
const NONCE_BYTES: usize = 24;

impl SecretKey {
    /// Reads a key file (64 hex digits); with `create`, writes a new random one (mode 0600)
    /// where none exists.
    pub fn load(path: &Path, create: bool) -> anyhow::Result<SecretKey> {
        if !path.exists() && create {
            let mut bytes = [0u8; 32];
            rand::rng().fill_bytes(&mut bytes);
            crate::bootstrap::write_private(path, &format!("{}\n", hex::encode(bytes)))?;
        }
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("while reading the secret key {}", path.display()))?;
        let bytes = hex::decode(text.trim())
            .ok()
            .filter(|b| b.len() == 32)
            .with_context(|| format!("{} must hold 64 hex digits (a 256-bit key)", path.display()))?;
        let cipher = XChaCha20Poly1305::new_from_slice(&bytes).map_err(|_| anyhow::anyhow!("bad key length"))?;
        Ok(SecretKey(cipher))
    }

    /// Seals `plain` for the slot `slot`.
    pub fn seal(&self, slot: &str, plain: &[u8]) -> anyhow::Result<String> {
        let mut nonce = [0u8; NONCE_BYTES];
        rand::rng().fill_bytes(&mut nonce);
        let sealed = self
            .0
            .encrypt(XNonce::from_slice(&nonce), Payload { msg: plain, aad: slot.as_bytes() })
            .map_err(|_| anyhow::anyhow!("sealing {slot} failed"))?;
        Ok(format!("{PREFIX}{}{}", hex::encode(nonce), hex::encode(sealed)))
    }

    /// Opens a value sealed for `slot`.
    pub fn open(&self, slot: &str, sealed: &str) -> anyhow::Result<Vec<u8>> {
        let Some(hexed) = sealed.strip_prefix(PREFIX) else { bail!("the stored {slot} is not a sealed value") };
        let bytes = hex::decode(hexed).with_context(|| format!("the stored {slot} is damaged"))?;
        if bytes.len() < NONCE_BYTES {
            bail!("the stored {slot} is damaged");
        }
        let (nonce, ciphertext) = bytes.split_at(NONCE_BYTES);
        self.0.decrypt(XNonce::from_slice(nonce), Payload { msg: ciphertext, aad: slot.as_bytes() }).map_err(|_| {
            anyhow::anyhow!(
                "this server's secret key does not open the {slot} stored in the database: give every server of a cluster the same --secret-key-file"
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(dir: &Path, name: &str) -> SecretKey {
        SecretKey::load(&dir.join(name), true).unwrap()
    }

    #[test]
    fn sealed_values_open_only_with_the_same_key_and_slot() {
        let dir = tempfile::tempdir().unwrap();
        let a = key(dir.path(), "a.key");
        let sealed = a.seal("ca_key", b"secret").unwrap();
        assert!(!sealed.contains("secret"));
        assert_eq!(a.open("ca_key", &sealed).unwrap(), b"secret");
        // The same key read again from its file.
        assert_eq!(key(dir.path(), "a.key").open("ca_key", &sealed).unwrap(), b"secret");
        assert!(a.open("admin_token", &sealed).is_err(), "bound to its slot");
        let err = key(dir.path(), "b.key").open("ca_key", &sealed).unwrap_err().to_string();
        assert!(err.contains("--secret-key-file"), "{err}");
        // Change the last hex digit to a different one (a fixed replacement would leave it
        // unchanged one time in sixteen).
        let mut tampered = sealed.clone();
        let last = tampered.pop().unwrap();
        tampered.push(if last == '0' { '1' } else { '0' });
        assert!(a.open("ca_key", &tampered).is_err());
        assert!(a.open("ca_key", "plain").is_err());
    }

    #[test]
    fn key_files_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("short.key"), "abcd").unwrap();
        assert!(SecretKey::load(&dir.path().join("short.key"), false).is_err());
        assert!(SecretKey::load(&dir.path().join("missing.key"), false).is_err());
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(dir.path().join({
                key(dir.path(), "new.key");
                "new.key"
            }))
            .unwrap()
            .permissions(),
        );
        assert_eq!(mode & 0o777, 0o600);
    }
}
