//! Short-lived signed URLs for generated images, so that an OpenAI `url` works without the API key: the
//! signature is an HMAC-SHA256 of the path and the expiry time under a secret drawn when the app is built
//! (URLs die with the process, as the images do).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("the link has expired")]
    Expired,
    #[error("the link's signature is invalid")]
    Invalid,
}

#[derive(Clone)]
pub struct UrlSigner {
    key: [u8; 32],
}

impl std::fmt::Debug for UrlSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("UrlSigner(..)")
    }
}

impl Default for UrlSigner {
    fn default() -> Self {
        Self::new()
    }
}

impl UrlSigner {
    /// A signer with a fresh random secret.
    pub fn new() -> Self {
        Self {
            key: rand::random(),
        }
    }

    fn mac(&self, path: &str, expires: u64) -> HmacSha256 {
        // Any key length is valid for HMAC.
        let mut mac = match HmacSha256::new_from_slice(&self.key) {
            Ok(mac) => mac,
            Err(_) => unreachable!("HMAC accepts keys of any length"),
        };
        mac.update(path.as_bytes());
        mac.update(b"\n");
        mac.update(expires.to_string().as_bytes());
        mac
    }

    /// `path?expires=..&signature=..`, valid for `ttl`.
    pub fn sign(&self, path: &str, ttl: Duration) -> String {
        let expires = unix_now().saturating_add(ttl.as_secs().max(1));
        let signature = hex(&self.mac(path, expires).finalize().into_bytes());
        format!("{path}?expires={expires}&signature={signature}")
    }

    /// Checks a signature (constant time) and the expiry.
    pub fn verify(&self, path: &str, expires: u64, signature: &str) -> Result<(), SignatureError> {
        let bytes = unhex(signature).ok_or(SignatureError::Invalid)?;
        self.mac(path, expires)
            .verify_slice(&bytes)
            .map_err(|_| SignatureError::Invalid)?;
        if unix_now() > expires {
            return Err(SignatureError::Expired);
        }
        Ok(())
    }
}

pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) || !text.is_ascii() {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|at| u8::from_str_radix(&text[at..at + 2], 16).ok())
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn parts(url: &str) -> (String, u64, String) {
        let (path, query) = url.split_once('?').unwrap();
        let mut expires = 0;
        let mut signature = String::new();
        for pair in query.split('&') {
            match pair.split_once('=').unwrap() {
                ("expires", value) => expires = value.parse().unwrap(),
                ("signature", value) => signature = value.to_owned(),
                _ => {}
            }
        }
        (path.to_owned(), expires, signature)
    }

    #[test]
    fn signed_urls_verify_and_tampering_fails() {
        let signer = UrlSigner::new();
        let url = signer.sign("/v1/images/files/abc/0.png", Duration::from_secs(60));
        let (path, expires, signature) = parts(&url);
        assert_eq!(signer.verify(&path, expires, &signature), Ok(()));
        assert_eq!(
            signer.verify("/v1/images/files/abc/1.png", expires, &signature),
            Err(SignatureError::Invalid)
        );
        assert_eq!(
            signer.verify(&path, expires + 1, &signature),
            Err(SignatureError::Invalid)
        );
        assert_eq!(
            signer.verify(&path, expires, "zz"),
            Err(SignatureError::Invalid)
        );
        assert_eq!(
            UrlSigner::new().verify(&path, expires, &signature),
            Err(SignatureError::Invalid)
        );
    }

    #[test]
    fn expired_urls_fail() {
        let signer = UrlSigner::new();
        let expires = unix_now() - 10;
        let signature = hex(&signer.mac("/p", expires).finalize().into_bytes());
        assert_eq!(
            signer.verify("/p", expires, &signature),
            Err(SignatureError::Expired)
        );
    }
}
