//! Integration tokens and the key that seals secrets at rest.
//!
//! A SCIM token is 256 random bits behind a recognisable prefix (`essy_scim_`), so secret
//! scanners can spot a leaked one. Only its SHA-256 is used for verification — a high-entropy
//! token needs no slow password hash — compared in constant time. For the product's "privacy
//! mode" reveal the token is also kept sealed with XChaCha20-Poly1305 under the secrets key,
//! bound to its integration id. Nothing here implements `Display` or a revealing `Debug` for a
//! secret, so a secret cannot end up in a log line by accident.

use std::fmt;
use std::io::Write;
use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// The prefix of every SCIM bearer token essentry issues.
pub const SCIM_TOKEN_PREFIX: &str = "essy_scim_";

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("the operating system's random source failed: {0}")]
    Random(String),
    #[error("secrets key file {path}: {source}")]
    KeyFile {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "the secrets key must be 32 bytes, base64-encoded (generate one with: head -c32 /dev/urandom | base64)"
    )]
    BadKey,
    #[error(
        "a sealed secret could not be opened: wrong secrets key, or the value was tampered with"
    )]
    Unseal,
}

/// A secret string whose `Debug` never shows it. Read it with [`Secret::expose`].
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: String) -> Self {
        Self(value)
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

fn random_bytes<const N: usize>() -> Result<[u8; N], SecretError> {
    let mut buf = [0u8; N];
    getrandom::fill(&mut buf).map_err(|e| SecretError::Random(e.to_string()))?;
    Ok(buf)
}

/// A fresh SCIM bearer token.
pub fn generate_scim_token() -> Result<Secret, SecretError> {
    let bytes = random_bytes::<32>()?;
    Ok(Secret(format!(
        "{SCIM_TOKEN_PREFIX}{}",
        URL_SAFE_NO_PAD.encode(bytes)
    )))
}

/// Prefix of admin API tokens.
pub const ADMIN_TOKEN_PREFIX: &str = "essy_admin_";

/// A fresh admin API bearer token.
pub fn generate_admin_token() -> Result<Secret, SecretError> {
    let bytes = random_bytes::<32>()?;
    Ok(Secret(format!(
        "{ADMIN_TOKEN_PREFIX}{}",
        URL_SAFE_NO_PAD.encode(bytes)
    )))
}

/// What is stored to verify a token.
pub fn token_hash(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

/// Constant-time check of a presented token against a stored hash.
pub fn verify_token(presented: &str, stored_hash: &[u8]) -> bool {
    token_hash(presented).ct_eq(stored_hash).into()
}

/// A masked form that identifies a token without revealing it: prefix and last four characters.
pub fn token_hint(token: &str) -> String {
    let tail: String = token
        .chars()
        .rev()
        .take(4)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    let head = if token.starts_with(SCIM_TOKEN_PREFIX) {
        SCIM_TOKEN_PREFIX
    } else if token.starts_with(ADMIN_TOKEN_PREFIX) {
        ADMIN_TOKEN_PREFIX
    } else {
        ""
    };
    format!("{head}…{tail}")
}

/// The 256-bit key that seals secrets at rest.
#[derive(Clone)]
pub struct SecretKey([u8; 32]);

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretKey([redacted])")
    }
}

impl SecretKey {
    pub fn from_base64(text: &str) -> Result<Self, SecretError> {
        let bytes = STANDARD
            .decode(text.trim())
            .map_err(|_| SecretError::BadKey)?;
        let key: [u8; 32] = bytes.try_into().map_err(|_| SecretError::BadKey)?;
        Ok(Self(key))
    }

    /// Reads the key file, or creates it (owner read/write only) with a fresh key on first run.
    pub fn load_or_create(path: &Path) -> Result<Self, SecretError> {
        let io = |source| SecretError::KeyFile {
            path: path.display().to_string(),
            source,
        };
        match std::fs::read_to_string(path) {
            Ok(text) => Self::from_base64(&text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                    std::fs::create_dir_all(dir).map_err(io)?;
                }
                let key = random_bytes::<32>()?;
                let mut options = std::fs::OpenOptions::new();
                options.write(true).create_new(true);
                #[cfg(unix)]
                {
                    use std::os::unix::fs::OpenOptionsExt;
                    options.mode(0o600);
                }
                match options.open(path) {
                    Ok(mut file) => {
                        file.write_all(format!("{}\n", STANDARD.encode(key)).as_bytes())
                            .map_err(io)?;
                        file.sync_all().map_err(io)?;
                        Ok(Self(key))
                    }
                    // Another process created it first: use theirs.
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                        Self::from_base64(&std::fs::read_to_string(path).map_err(io)?)
                    }
                    Err(e) => Err(io(e)),
                }
            }
            Err(e) => Err(io(e)),
        }
    }

    /// Seals `plaintext`, bound to `context` (e.g. the integration id): the result only opens
    /// with the same key and context.
    pub fn seal(&self, plaintext: &str, context: &str) -> Result<String, SecretError> {
        let cipher = XChaCha20Poly1305::new((&self.0).into());
        let nonce_bytes = random_bytes::<24>()?;
        let nonce = XNonce::from_slice(&nonce_bytes);
        let sealed = cipher
            .encrypt(
                nonce,
                Payload {
                    msg: plaintext.as_bytes(),
                    aad: context.as_bytes(),
                },
            )
            .map_err(|_| SecretError::Unseal)?;
        let mut out = nonce_bytes.to_vec();
        out.extend_from_slice(&sealed);
        Ok(format!("v1:{}", STANDARD.encode(out)))
    }

    pub fn open(&self, sealed: &str, context: &str) -> Result<Secret, SecretError> {
        let body = sealed.strip_prefix("v1:").ok_or(SecretError::Unseal)?;
        let bytes = STANDARD.decode(body).map_err(|_| SecretError::Unseal)?;
        if bytes.len() < 24 {
            return Err(SecretError::Unseal);
        }
        let (nonce, ct) = bytes.split_at(24);
        let cipher = XChaCha20Poly1305::new((&self.0).into());
        let plain = cipher
            .decrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: ct,
                    aad: context.as_bytes(),
                },
            )
            .map_err(|_| SecretError::Unseal)?;
        String::from_utf8(plain)
            .map(Secret)
            .map_err(|_| SecretError::Unseal)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_prefixed_unique_and_verifiable() {
        let a = generate_scim_token().unwrap();
        let b = generate_scim_token().unwrap();
        assert!(a.expose().starts_with(SCIM_TOKEN_PREFIX));
        assert_eq!(a.expose().len(), SCIM_TOKEN_PREFIX.len() + 43);
        assert_ne!(a, b);
        let h = token_hash(a.expose());
        assert!(verify_token(a.expose(), &h));
        assert!(!verify_token(b.expose(), &h));
        assert!(!format!("{a:?}").contains(a.expose()));
        assert!(token_hint(a.expose()).ends_with(&a.expose()[a.expose().len() - 4..]));
    }

    #[test]
    fn sealing_round_trips_and_is_bound_to_context() {
        let key = SecretKey([7u8; 32]);
        let sealed = key.seal("essy_scim_secret", "integration-1").unwrap();
        assert!(!sealed.contains("secret"));
        assert_eq!(
            key.open(&sealed, "integration-1").unwrap().expose(),
            "essy_scim_secret"
        );
        assert!(key.open(&sealed, "integration-2").is_err());
        assert!(SecretKey([8u8; 32]).open(&sealed, "integration-1").is_err());
    }

    #[test]
    fn key_file_is_created_owner_only_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/secret.key");
        let k1 = SecretKey::load_or_create(&path).unwrap();
        let k2 = SecretKey::load_or_create(&path).unwrap();
        assert_eq!(k1.0, k2.0);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert!(SecretKey::from_base64("short").is_err());
    }
}
