//! Standard Webhooks signatures (<https://www.standardwebhooks.com>): the receiver checks
//! `webhook-signature: v1,<base64 HMAC-SHA256("{webhook-id}.{webhook-timestamp}.{body}")>`, keyed
//! by the base64-decoded part of the workspace's `whsec_…` secret.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The secret is not `whsec_` followed by base64.
#[derive(Debug, thiserror::Error)]
#[error("webhook secret is not \"whsec_\" followed by base64")]
pub struct BadSecret;

/// The key bytes of a `whsec_…` secret (a bare base64 secret is accepted too).
pub fn secret_key(secret: &str) -> Result<Vec<u8>, BadSecret> {
    let encoded = secret.strip_prefix("whsec_").unwrap_or(secret);
    STANDARD.decode(encoded.trim()).map_err(|_| BadSecret)
}

/// The `webhook-signature` header value for one delivery attempt.
pub fn sign(key: &[u8], msg_id: &str, timestamp: i64, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(msg_id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
}

/// The `webhook-signature` header value signed with each of `keys`, space-separated, the
/// first key first. After a secret rotation the delivery carries the new secret's signature and
/// the replaced one's (for 24 h), so receivers holding either secret verify it.
pub fn sign_all<K: AsRef<[u8]>>(keys: &[K], msg_id: &str, timestamp: i64, body: &[u8]) -> String {
    keys.iter()
        .map(|k| sign(k.as_ref(), msg_id, timestamp, body))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Whether `header` (possibly several space-separated signatures) holds a valid one: what a
/// receiver does, used by the tests and shown in the docs.
pub fn verify(key: &[u8], msg_id: &str, timestamp: i64, body: &[u8], header: &str) -> bool {
    let expected = sign(key, msg_id, timestamp, body);
    header.split(' ').any(|candidate| {
        let (a, b) = (candidate.as_bytes(), expected.as_bytes());
        a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_specifications_example() {
        // The example from the Standard Webhooks specification.
        let key = secret_key("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let body = br#"{"test": 2432232314}"#;
        let sig = sign(&key, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body);
        assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
        assert!(verify(
            &key,
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            body,
            &sig
        ));
        assert!(!verify(&key, "msg_other", 1614265330, body, &sig));
    }

    #[test]
    fn a_header_signed_with_two_keys_verifies_with_either() {
        let (new, old) = (b"new-key".to_vec(), b"old-key".to_vec());
        let header = sign_all(&[&new, &old], "msg_1", 1614265330, b"{}");
        assert_eq!(header.split(' ').count(), 2);
        assert!(header.starts_with(&sign(&new, "msg_1", 1614265330, b"{}")));
        assert!(verify(&new, "msg_1", 1614265330, b"{}", &header));
        assert!(verify(&old, "msg_1", 1614265330, b"{}", &header));
        assert!(!verify(b"other", "msg_1", 1614265330, b"{}", &header));
    }
}
