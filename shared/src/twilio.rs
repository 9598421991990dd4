//! Twilio's request signature (`X-Twilio-Signature`), which Twilio-compatible carriers
//! (Twilio, SignalWire, Telnyx TeXML, and our carrier-sim) put on every status callback.
//!
//! The signature is base64(HMAC-SHA1(auth token, full URL + each POST parameter's name and value,
//! sorted by name)). The carrier-sim signs with [`sign`]; the gateway checks with [`verify`].

use base64::Engine;
use hmac::{Hmac, Mac};
use sha1::Sha1;

/// The signature of a form POST to `url` with `params`.
pub fn sign(auth_token: &str, url: &str, params: &[(String, String)]) -> String {
    let mut sorted: Vec<&(String, String)> = params.iter().collect();
    sorted.sort();
    let mut data = url.to_owned();
    for (name, value) in sorted {
        data.push_str(name);
        data.push_str(value);
    }
    let mut mac =
        Hmac::<Sha1>::new_from_slice(auth_token.as_bytes()).expect("HMAC takes any key length");
    mac.update(data.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// Whether `signature` is the right one for this request (compared in constant time).
pub fn verify(auth_token: &str, url: &str, params: &[(String, String)], signature: &str) -> bool {
    let expected = sign(auth_token, url, params);
    let (a, b) = (expected.as_bytes(), signature.trim().as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_twilios_documented_example() {
        // From Twilio's "Webhooks security" documentation.
        let params: Vec<(String, String)> = [
            ("CallSid", "CA1234567890ABCDE"),
            ("Caller", "+12349013030"),
            ("Digits", "1234"),
            ("From", "+12349013030"),
            ("To", "+18005551212"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let url = "https://mycompany.com/myapp.php?foo=1&bar=2";
        let sig = sign("12345", url, &params);
        assert_eq!(sig, "0/KCTR6DLpKmkAf8muzZqo1nDgQ=");
        assert!(verify("12345", url, &params, &sig));
        assert!(!verify("other", url, &params, &sig));
    }
}
