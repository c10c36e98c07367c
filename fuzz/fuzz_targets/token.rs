//! Access tokens as an attacker sends them: any bytes in HELLO's `token`,
//! checked by a verifier with a real key, must be refused without a panic
//! (and never accepted: no input here is signed by the key); grant patterns
//! against any room name match without a panic or a blow-up.

#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use router::auth::{SigningKey, Verifier, wildcard};
use router::config::{AuthConfig, AuthMode, KeyConfig};

fn verifier() -> &'static Verifier {
    static V: OnceLock<Verifier> = OnceLock::new();
    V.get_or_init(|| {
        let key = SigningKey::generate();
        let cfg = AuthConfig {
            mode: AuthMode::Token,
            keys: vec![KeyConfig::new("k1", key.public_key())],
            ..AuthConfig::default()
        };
        Verifier::from_config(&cfg).unwrap_or_default()
    })
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    assert!(verifier().verify(&text, 1_767_225_600).is_err());
    // A pattern and a name, split at the first NUL.
    let (p, n) = match data.iter().position(|&b| b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &b""[..]),
    };
    let _ = wildcard(p, n);
});
