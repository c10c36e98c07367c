//! Access tokens: who a session is and what it may do.
//!
//! A token is a JWT signed with an issuer's Ed25519 key (`alg` `EdDSA`,
//! `kid` naming the key), minted by `switchboard token mint`. The router
//! holds only public keys (`[[auth.keys]]`): a leaked config file mints
//! nothing. Its claims name the identity (`sub`), the display name the
//! session gets (`name`), the expiry (`exp`), an id to revoke it by
//! (`jti`), and the grants: room name patterns (`*` for any run of
//! characters) to `join`, to `talk` in (take the floor, publish media) and
//! to `create`, the highest floor priority (`max_priority`) and `admin`.
//!
//! Checking is done against the engine's wall clock, so tests run in
//! virtual time; signature, key, issuer and claims come from the
//! `jsonwebtoken` crate. docs/security.md tells the whole story.

use std::collections::HashSet;
use std::fmt::Write as _;

use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePrivateKey, spki::der::pem::LineEnding};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use proto::control::ErrorCode;
use serde::{Deserialize, Serialize};

use crate::config::{AuthConfig, AuthMode, ConfigError};

/// The highest floor priority a client can ask for.
pub const MAX_PRIORITY: u8 = 7;
/// Longest token accepted, in bytes.
pub const MAX_TOKEN_BYTES: usize = 4096;
/// Most patterns in one grant list.
pub const MAX_PATTERNS: usize = 64;

/// What a session may do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grants {
    /// Rooms it may join (JOIN, REQUEST_JOIN), by name pattern.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub join: Vec<String>,
    /// Rooms where it may talk: take the floor and publish media.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub talk: Vec<String>,
    /// Rooms it may create (CREATE_ROOM names; a meeting is `meeting-NNNNNN`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub create: Vec<String>,
    /// The highest MIC_REQUEST priority it may ask for.
    #[serde(default)]
    pub max_priority: u8,
    /// Whether it may call the admin API.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub admin: bool,
}

impl Grants {
    /// Everything a session of an `open` router may do (not admin); its
    /// floor priority is bounded by the room alone.
    pub fn open() -> Self {
        Self {
            join: vec!["*".into()],
            talk: vec!["*".into()],
            create: vec!["*".into()],
            // No limit of its own: the room's rules answer (BAD_FIELD for
            // what no room takes).
            max_priority: u8::MAX,
            admin: false,
        }
    }

    /// Nothing at all: a token's grants start here.
    pub fn default_none() -> Self {
        Self {
            join: Vec::new(),
            talk: Vec::new(),
            create: Vec::new(),
            max_priority: 0,
            admin: false,
        }
    }

    pub fn may_join(&self, room: &str) -> bool {
        any_matches(&self.join, room)
    }

    pub fn may_talk(&self, room: &str) -> bool {
        any_matches(&self.talk, room)
    }

    pub fn may_create(&self, room: &str) -> bool {
        any_matches(&self.create, room)
    }
}

fn any_matches(patterns: &[String], name: &str) -> bool {
    patterns
        .iter()
        .any(|p| wildcard(p.as_bytes(), name.as_bytes()))
}

/// Whether `name` matches `pattern`, where `*` stands for any run of
/// characters (none included) and everything else for itself.
pub fn wildcard(pattern: &[u8], name: &[u8]) -> bool {
    // Greedy with one backtrack point: linear in practice, never
    // exponential (the last `*` seen is the only one retried).
    let (mut p, mut n) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while n < name.len() {
        if p < pattern.len() && pattern[p] == b'*' {
            star = Some((p, n));
            p += 1;
        } else if p < pattern.len() && pattern[p] == name[n] {
            p += 1;
            n += 1;
        } else if let Some((sp, sn)) = star {
            p = sp + 1;
            n = sn + 1;
            star = Some((sp, sn + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

/// A token's claims.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The identity.
    pub sub: String,
    /// The display name, which becomes the session's nickname (`sub` when
    /// absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Expiry, in Unix seconds.
    pub exp: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<u64>,
    /// Not valid before, in Unix seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<u64>,
    /// The token's id, by which it is revoked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jti: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
    #[serde(flatten)]
    pub grants: Grants,
}

impl Claims {
    /// Claims for `sub` until `exp` with `grants`, nothing else set.
    pub fn new(sub: impl Into<String>, exp: u64, grants: Grants) -> Self {
        Self {
            sub: sub.into(),
            name: None,
            exp,
            iat: None,
            nbf: None,
            jti: None,
            iss: None,
            grants,
        }
    }
}

/// Who a verified token says a session is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub subject: String,
    pub name: String,
    pub token_id: Option<String>,
    pub expires: u64,
    pub grants: Grants,
}

/// Why a token was refused; each maps to a documented error code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("this router admits only sessions with an access token (HELLO `token`)")]
    Required,
    #[error("the token is malformed: {0}")]
    Malformed(String),
    #[error("the token is signed with key `{0}`, which this router does not know")]
    UnknownKey(String),
    #[error("the token is signed with key `{id}`, retired at {at} (Unix time)")]
    RetiredKey { id: String, at: u64 },
    #[error("the token's signature does not verify")]
    BadSignature,
    #[error("the token was issued by `{0}`, not this router's issuer")]
    WrongIssuer(String),
    #[error("the token expired at {0} (Unix time)")]
    Expired(u64),
    #[error("the token is not valid before {0} (Unix time)")]
    NotYetValid(u64),
    #[error("the token has been revoked")]
    Revoked,
}

impl AuthError {
    pub fn code(&self) -> ErrorCode {
        match self {
            AuthError::Required => ErrorCode::TokenRequired,
            AuthError::Expired(_) => ErrorCode::TokenExpired,
            AuthError::Revoked => ErrorCode::TokenRevoked,
            _ => ErrorCode::TokenInvalid,
        }
    }
}

struct Key {
    id: String,
    key: DecodingKey,
    accept_until: Option<u64>,
}

/// Checks tokens: the issuer's public keys, what is revoked, the mode.
/// Built from `[auth]` at start and again on SIGHUP.
pub struct Verifier {
    mode: AuthMode,
    keys: Vec<Key>,
    issuer: Option<String>,
    revoked_ids: HashSet<String>,
    revoked_subjects: HashSet<String>,
    leeway: u64,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field("mode", &self.mode)
            .field("keys", &self.keys.iter().map(|k| &k.id).collect::<Vec<_>>())
            .field(
                "revoked",
                &(self.revoked_ids.len() + self.revoked_subjects.len()),
            )
            .finish()
    }
}

impl Default for Verifier {
    /// An `open` router with no keys: tokens are ignored.
    fn default() -> Self {
        Self {
            mode: AuthMode::Open,
            keys: Vec::new(),
            issuer: None,
            revoked_ids: HashSet::new(),
            revoked_subjects: HashSet::new(),
            leeway: 0,
        }
    }
}

impl Verifier {
    /// The verifier `[auth]` describes; reads `revoked_file` when set.
    pub fn from_config(cfg: &AuthConfig) -> Result<Self, ConfigError> {
        let mut keys = Vec::with_capacity(cfg.keys.len());
        for k in &cfg.keys {
            let key = DecodingKey::from_ed_components(&k.public_key).map_err(|e| {
                ConfigError::Invalid(format!("auth.keys `{}`: public_key: {e}", k.id))
            })?;
            keys.push(Key {
                id: k.id.clone(),
                key,
                accept_until: k.accept_until,
            });
        }
        let mut revoked_ids: HashSet<String> = cfg.revoked.iter().cloned().collect();
        let mut revoked_subjects: HashSet<String> = cfg.revoked_subjects.iter().cloned().collect();
        if let Some(path) = &cfg.revoked_file {
            let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                path: path.display().to_string(),
                source,
            })?;
            for line in text.lines().map(str::trim) {
                if line.is_empty() || line.starts_with('#') {
                    continue;
                }
                match line.strip_prefix("sub:") {
                    Some(sub) => revoked_subjects.insert(sub.trim().to_owned()),
                    None => revoked_ids.insert(line.to_owned()),
                };
            }
        }
        Ok(Self {
            mode: cfg.mode,
            keys,
            issuer: cfg.issuer.clone(),
            revoked_ids,
            revoked_subjects,
            leeway: cfg.leeway_secs,
        })
    }

    pub fn mode(&self) -> AuthMode {
        self.mode
    }

    /// Whether any key is configured (an `open` router checks tokens only
    /// then).
    pub fn has_keys(&self) -> bool {
        !self.keys.is_empty()
    }

    /// Whether a session of this identity and token id is revoked now.
    pub fn is_revoked(&self, subject: &str, token_id: Option<&str>) -> bool {
        self.revoked_subjects.contains(subject)
            || token_id.is_some_and(|j| self.revoked_ids.contains(j))
    }

    /// Checks `token` at Unix time `now` (seconds).
    pub fn verify(&self, token: &str, now: u64) -> Result<Identity, AuthError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(AuthError::Malformed(format!(
                "longer than {MAX_TOKEN_BYTES} bytes"
            )));
        }
        let header =
            jsonwebtoken::decode_header(token).map_err(|e| AuthError::Malformed(e.to_string()))?;
        if header.alg != Algorithm::EdDSA {
            return Err(AuthError::Malformed(format!(
                "algorithm {:?}; this router takes EdDSA",
                header.alg
            )));
        }
        let kid = header
            .kid
            .ok_or_else(|| AuthError::Malformed("no `kid` in its header".into()))?;
        let key = self
            .keys
            .iter()
            .find(|k| k.id == kid)
            .ok_or_else(|| AuthError::UnknownKey(kid.chars().take(64).collect()))?;
        if let Some(at) = key.accept_until
            && now > at
        {
            return Err(AuthError::RetiredKey { id: kid, at });
        }
        // Times are checked below against the caller's clock.
        let mut v = Validation::new(Algorithm::EdDSA);
        v.validate_exp = false;
        v.validate_nbf = false;
        v.validate_aud = false;
        v.required_spec_claims = ["exp", "sub"].into_iter().map(String::from).collect();
        let data = jsonwebtoken::decode::<Claims>(token, &key.key, &v).map_err(|e| {
            use jsonwebtoken::errors::ErrorKind;
            match e.kind() {
                ErrorKind::InvalidSignature => AuthError::BadSignature,
                _ => AuthError::Malformed(e.to_string()),
            }
        })?;
        let c = data.claims;
        if let Some(want) = &self.issuer
            && c.iss.as_deref() != Some(want.as_str())
        {
            return Err(AuthError::WrongIssuer(
                c.iss.unwrap_or_default().chars().take(64).collect(),
            ));
        }
        if now > c.exp.saturating_add(self.leeway) {
            return Err(AuthError::Expired(c.exp));
        }
        if let Some(nbf) = c.nbf
            && now.saturating_add(self.leeway) < nbf
        {
            return Err(AuthError::NotYetValid(nbf));
        }
        if self.is_revoked(&c.sub, c.jti.as_deref()) {
            return Err(AuthError::Revoked);
        }
        let lists = [&c.grants.join, &c.grants.talk, &c.grants.create];
        if lists.iter().any(|l| l.len() > MAX_PATTERNS) {
            return Err(AuthError::Malformed(format!(
                "more than {MAX_PATTERNS} patterns in a grant"
            )));
        }
        if c.grants.max_priority > MAX_PRIORITY {
            return Err(AuthError::Malformed(format!(
                "max_priority above {MAX_PRIORITY}"
            )));
        }
        Ok(Identity {
            name: c.name.clone().unwrap_or_else(|| c.sub.clone()),
            subject: c.sub,
            token_id: c.jti,
            expires: c.exp,
            grants: c.grants,
        })
    }
}

/// The verifier in force, shared by the engine and the admin API and
/// replaced whole on SIGHUP.
pub type SharedVerifier = std::sync::Arc<std::sync::RwLock<std::sync::Arc<Verifier>>>;

/// The verifier `shared` holds now.
pub fn current(shared: &SharedVerifier) -> std::sync::Arc<Verifier> {
    match shared.read() {
        Ok(v) => v.clone(),
        Err(poisoned) => poisoned.into_inner().clone(),
    }
}

/// An issuer's signing key (Ed25519), kept in a PKCS#8 PEM file.
pub struct SigningKey(ed25519_dalek::SigningKey);

impl SigningKey {
    /// A fresh key from the system's random source.
    pub fn generate() -> Self {
        let seed: [u8; 32] = rand::random();
        Self(ed25519_dalek::SigningKey::from_bytes(&seed))
    }

    pub fn from_pem(pem: &str) -> Result<Self, String> {
        ed25519_dalek::SigningKey::from_pkcs8_pem(pem)
            .map(Self)
            .map_err(|e| format!("not an Ed25519 PKCS#8 PEM private key: {e}"))
    }

    pub fn to_pem(&self) -> Result<String, String> {
        self.0
            .to_pkcs8_pem(LineEnding::LF)
            .map(|p| p.to_string())
            .map_err(|e| e.to_string())
    }

    /// The public key as `[[auth.keys]] public_key` takes it: the 32 bytes,
    /// base64url without padding (a JWK's `x`).
    pub fn public_key(&self) -> String {
        use base64::Engine as _;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(self.0.verifying_key().as_bytes())
    }

    /// A signed token for `claims`, its header naming key `kid`.
    pub fn mint(&self, kid: &str, claims: &Claims) -> Result<String, String> {
        let der = self.0.to_pkcs8_der().map_err(|e| e.to_string())?;
        let key = EncodingKey::from_ed_der(der.as_bytes());
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(kid.to_owned());
        jsonwebtoken::encode(&header, claims, &key).map_err(|e| e.to_string())
    }
}

/// A fresh token id: 128 random bits in hex.
pub fn new_token_id() -> String {
    let bits: u128 = rand::random();
    let mut s = String::with_capacity(32);
    let _ = write!(s, "{bits:032x}");
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::KeyConfig;

    fn claims(exp: u64) -> Claims {
        Claims {
            sub: "alice@example".into(),
            name: Some("Alice".into()),
            exp,
            iat: None,
            nbf: None,
            jti: Some("t1".into()),
            iss: None,
            grants: Grants {
                join: vec!["ops-*".into()],
                talk: vec!["ops-1".into()],
                create: vec![],
                max_priority: 2,
                admin: false,
            },
        }
    }

    fn verifier(keys: &[(&str, &SigningKey, Option<u64>)]) -> Verifier {
        let cfg = AuthConfig {
            mode: AuthMode::Token,
            keys: keys
                .iter()
                .map(|(id, k, until)| KeyConfig {
                    id: (*id).into(),
                    public_key: k.public_key(),
                    accept_until: *until,
                })
                .collect(),
            revoked: vec!["gone".into()],
            revoked_subjects: vec!["mallory".into()],
            ..AuthConfig::default()
        };
        match Verifier::from_config(&cfg) {
            Ok(v) => v,
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn patterns_match_as_globs() {
        let yes = [
            ("*", ""),
            ("*", "lobby"),
            ("ops-*", "ops-1"),
            ("ops-*", "ops-"),
            ("*-1", "ops-1"),
            ("a*b*c", "axxbyyc"),
            ("lobby", "lobby"),
        ];
        for (p, n) in yes {
            assert!(wildcard(p.as_bytes(), n.as_bytes()), "{p} ~ {n}");
        }
        let no = [
            ("ops-*", "ops"),
            ("lobby", "lobby2"),
            ("a*b*c", "axxbyy"),
            ("", "x"),
        ];
        for (p, n) in no {
            assert!(!wildcard(p.as_bytes(), n.as_bytes()), "{p} !~ {n}");
        }
        // A pathological pattern stays quick.
        let long = "a".repeat(4000);
        assert!(!wildcard("*a*a*a*a*a*b".as_bytes(), long.as_bytes()));
    }

    #[test]
    fn a_minted_token_verifies_and_every_flaw_has_its_error() {
        let k = SigningKey::generate();
        let v = verifier(&[("k1", &k, None)]);
        let t = k.mint("k1", &claims(1000));
        let Ok(t) = t else { panic!("{t:?}") };
        let id = v.verify(&t, 900);
        let Ok(id) = id else { panic!("{id:?}") };
        assert_eq!(
            (id.name.as_str(), id.subject.as_str()),
            ("Alice", "alice@example")
        );
        assert!(id.grants.may_join("ops-7") && !id.grants.may_join("lobby"));
        assert!(id.grants.may_talk("ops-1") && !id.grants.may_talk("ops-7"));
        assert!(!id.grants.may_create("ops-1"));

        assert!(v.verify(&t, 1030).is_ok(), "30 s of leeway");
        assert_eq!(
            v.verify(&t, 1031).err().map(|e| e.code()),
            Some(ErrorCode::TokenExpired)
        );
        let other = SigningKey::generate();
        let forged = other.mint("k1", &claims(1000)).unwrap_or_default();
        assert_eq!(v.verify(&forged, 900).err(), Some(AuthError::BadSignature));
        let unknown = other.mint("k9", &claims(1000)).unwrap_or_default();
        assert!(matches!(
            v.verify(&unknown, 900),
            Err(AuthError::UnknownKey(_))
        ));
        assert!(matches!(
            v.verify("not.a.jwt", 900),
            Err(AuthError::Malformed(_))
        ));
        assert!(matches!(
            v.verify(&"x".repeat(MAX_TOKEN_BYTES + 1), 900),
            Err(AuthError::Malformed(_))
        ));
        let mut c = claims(1000);
        c.jti = Some("gone".into());
        let revoked = k.mint("k1", &c).unwrap_or_default();
        assert_eq!(
            v.verify(&revoked, 900).err().map(|e| e.code()),
            Some(ErrorCode::TokenRevoked)
        );
        let mut c = claims(1000);
        c.sub = "mallory".into();
        let revoked = k.mint("k1", &c).unwrap_or_default();
        assert_eq!(v.verify(&revoked, 900).err(), Some(AuthError::Revoked));
        let mut c = claims(1000);
        c.nbf = Some(950);
        let early = k.mint("k1", &c).unwrap_or_default();
        assert_eq!(
            v.verify(&early, 900).err(),
            Some(AuthError::NotYetValid(950))
        );
        let mut c = claims(1000);
        c.grants.max_priority = 9;
        let greedy = k.mint("k1", &c).unwrap_or_default();
        assert!(matches!(
            v.verify(&greedy, 900),
            Err(AuthError::Malformed(_))
        ));
    }

    #[test]
    fn an_old_key_is_accepted_until_its_overlap_ends() {
        let (old, new) = (SigningKey::generate(), SigningKey::generate());
        let v = verifier(&[("new", &new, None), ("old", &old, Some(500))]);
        let by_old = old.mint("old", &claims(1000)).unwrap_or_default();
        let by_new = new.mint("new", &claims(1000)).unwrap_or_default();
        assert!(v.verify(&by_old, 499).is_ok());
        assert!(v.verify(&by_new, 499).is_ok());
        assert_eq!(
            v.verify(&by_old, 501).err(),
            Some(AuthError::RetiredKey {
                id: "old".into(),
                at: 500
            })
        );
        assert!(v.verify(&by_new, 501).is_ok());
    }

    #[test]
    fn a_signing_key_survives_its_pem() {
        let k = SigningKey::generate();
        let pem = k.to_pem().unwrap_or_default();
        assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----"), "{pem}");
        let back = SigningKey::from_pem(&pem);
        assert!(back.is_ok_and(|b| b.public_key() == k.public_key()));
        assert!(SigningKey::from_pem("nonsense").is_err());
    }

    #[test]
    fn an_issuer_when_configured_must_match() {
        let k = SigningKey::generate();
        let mut v = verifier(&[("k1", &k, None)]);
        v.issuer = Some("sb.example".into());
        let mut c = claims(1000);
        let none = k.mint("k1", &c).unwrap_or_default();
        assert!(matches!(
            v.verify(&none, 900),
            Err(AuthError::WrongIssuer(_))
        ));
        c.iss = Some("sb.example".into());
        let good = k.mint("k1", &c).unwrap_or_default();
        assert!(v.verify(&good, 900).is_ok());
    }
}
