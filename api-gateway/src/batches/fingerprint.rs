//! What an `Idempotency-Key` is bound to: a digest of the request as parsed, so the same
//! request sent again (re-serialised, or a multipart upload with a new boundary) matches.

use sha2::{Digest, Sha256};

use shared::domain::Surface;

/// The SHA-256 a request's `Idempotency-Key` is bound to, computed as the body arrives: over
/// the surface and the request as parsed (a JSON body: each row as encoded for ingestion, then
/// the settings with their keys sorted, so whitespace and key order do not matter), or over the
/// surface and each part's own digest (a multipart upload, whose boundary changes at every
/// send).
#[derive(Clone)]
pub struct Fingerprint(Sha256);

impl Fingerprint {
    /// Starts the fingerprint of a JSON body on `surface`.
    pub fn json(surface: Surface) -> Self {
        let mut hash = Sha256::new();
        hash.update(surface.as_str().as_bytes());
        hash.update([0]);
        Self(hash)
    }

    /// Starts the fingerprint of a multipart upload on `surface`.
    pub fn multipart(surface: Surface) -> Self {
        let mut hash = Sha256::new();
        hash.update(surface.as_str().as_bytes());
        hash.update(b"\0multipart\0");
        Self(hash)
    }

    /// Starts the digest of one multipart part.
    pub fn part() -> Self {
        Self(Sha256::new())
    }

    /// Adds bytes.
    pub fn update(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    /// Adds another fingerprint's digest (a part's), tagged with the part's name.
    pub fn update_part(&mut self, name: &str, part: Fingerprint) {
        self.0.update(name.as_bytes());
        self.0.update([0]);
        self.0.update(part.finish());
    }

    /// The digest.
    pub fn finish(self) -> Vec<u8> {
        self.0.finalize().to_vec()
    }
}
