//! The checks an ID token passes before the portal believes a word of it
//! (OpenID Connect Core 1.0, 3.1.3.7).
//!
//! Guarantees: a token is accepted only if it is signed with RS256 or ES256
//! by a key of the IdP's JWKS of the matching type (never `none`, never an
//! HMAC with a public key as secret), `iss` is the configured issuer, `aud`
//! holds the portal's client id (and `azp`, if present, names it; it must
//! be present when there are several audiences), `exp` is ahead and `iat`
//! not ahead of now by more than [`LEEWAY_SECS`], and `nonce` is the one
//! this login sent. Nothing here reads a claim before all of that passed.

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, Header, Validation, errors::ErrorKind};
use serde_json::{Map, Value};

/// Clock skew allowed between the IdP and the SOC.
pub const LEEWAY_SECS: u64 = 60;

/// What the token must say.
pub struct Expected<'a> {
    pub issuer: &'a str,
    pub client_id: &'a str,
    pub nonce: &'a str,
    /// Now, seconds since the epoch.
    pub now: u64,
}

/// Why an ID token was refused (shown to the person and audited).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    #[error("the ID token is not a signed JWT ({0})")]
    Malformed(String),
    #[error("the ID token is signed with {0:?}; the portal accepts RS256 and ES256 only")]
    Algorithm(Algorithm),
    #[error("the identity provider's JWKS has no key {0:?} for this ID token")]
    UnknownKey(String),
    #[error("the ID token's signature does not verify with the identity provider's key")]
    Signature,
    #[error("the ID token was not issued by {0} (portal.oidc.issuer)")]
    Issuer(String),
    #[error("the ID token is not meant for this portal: its aud lacks client id {0:?}")]
    Audience(String),
    #[error(
        "the ID token names several audiences but its azp is not this portal's client id {0:?}"
    )]
    AuthorizedParty(String),
    #[error("the ID token has expired (check the SOC's and the IdP's clocks)")]
    Expired,
    #[error("the ID token is issued in the future (check the SOC's and the IdP's clocks)")]
    IssuedLater,
    #[error("the ID token's nonce is not the one this login sent")]
    Nonce,
    #[error("the ID token lacks the claim {0:?}")]
    Missing(String),
    #[error("the identity provider has not verified this e-mail address")]
    UnverifiedEmail,
}

/// The header of `token`, with its algorithm one the portal accepts.
pub fn header(token: &str) -> Result<Header, TokenError> {
    let header =
        jsonwebtoken::decode_header(token).map_err(|e| TokenError::Malformed(e.to_string()))?;
    match header.alg {
        Algorithm::RS256 | Algorithm::ES256 => Ok(header),
        other => Err(TokenError::Algorithm(other)),
    }
}

/// The key of `jwks` that signed a token with `header`: by `kid`, or the
/// only key of the right type when the token names none.
pub fn key_for<'a>(jwks: &'a JwkSet, header: &Header) -> Option<&'a Jwk> {
    let fits = |k: &&Jwk| fits(k, header.alg);
    match &header.kid {
        Some(kid) => jwks.find(kid).filter(fits),
        None => {
            let mut candidates = jwks.keys.iter().filter(fits);
            match (candidates.next(), candidates.next()) {
                (Some(only), None) => Some(only),
                _ => None,
            }
        }
    }
}

fn fits(key: &Jwk, alg: Algorithm) -> bool {
    match (&key.algorithm, alg) {
        (AlgorithmParameters::RSA(_), Algorithm::RS256) => true,
        (AlgorithmParameters::EllipticCurve(ec), Algorithm::ES256) => {
            ec.curve == EllipticCurve::P256
        }
        _ => false,
    }
}

/// The claims of `token` once it passed every check against `key`.
pub fn verify(
    token: &str,
    header: &Header,
    key: &Jwk,
    expected: &Expected,
) -> Result<Map<String, Value>, TokenError> {
    let decoding = DecodingKey::from_jwk(key).map_err(|e| TokenError::Malformed(e.to_string()))?;
    let mut validation = Validation::new(header.alg);
    validation.leeway = LEEWAY_SECS;
    validation.set_issuer(&[expected.issuer]);
    validation.set_audience(&[expected.client_id]);
    validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
    let data =
        jsonwebtoken::decode::<Map<String, Value>>(token, &decoding, &validation).map_err(|e| {
            match e.kind() {
                ErrorKind::InvalidSignature => TokenError::Signature,
                ErrorKind::InvalidIssuer => TokenError::Issuer(expected.issuer.to_string()),
                ErrorKind::InvalidAudience => TokenError::Audience(expected.client_id.to_string()),
                ErrorKind::ExpiredSignature => TokenError::Expired,
                ErrorKind::MissingRequiredClaim(c) => TokenError::Missing(c.clone()),
                _ => TokenError::Malformed(e.to_string()),
            }
        })?;
    let claims = data.claims;
    let iat = claims.get("iat").and_then(Value::as_u64);
    if iat.is_none_or(|iat| iat > expected.now + LEEWAY_SECS) {
        return Err(TokenError::IssuedLater);
    }
    let several = claims
        .get("aud")
        .and_then(Value::as_array)
        .is_some_and(|a| a.len() > 1);
    match claims.get("azp").and_then(Value::as_str) {
        Some(azp) if azp != expected.client_id => {
            return Err(TokenError::AuthorizedParty(expected.client_id.to_string()));
        }
        None if several => {
            return Err(TokenError::AuthorizedParty(expected.client_id.to_string()));
        }
        _ => {}
    }
    let nonce = claims.get("nonce").and_then(Value::as_str).unwrap_or("");
    if !crate::session::same_token(nonce, expected.nonce) {
        return Err(TokenError::Nonce);
    }
    Ok(claims)
}

/// The portal user a verified token names: the value of `claim`
/// (`portal.oidc.claim`); an `email` the IdP marks unverified names nobody.
pub fn user_name<'a>(claims: &'a Map<String, Value>, claim: &str) -> Result<&'a str, TokenError> {
    let name = claims
        .get(claim)
        .and_then(Value::as_str)
        .ok_or_else(|| TokenError::Missing(claim.to_string()))?;
    if claim == "email" && claims.get("email_verified") == Some(&Value::Bool(false)) {
        return Err(TokenError::UnverifiedEmail);
    }
    Ok(name)
}

/// Whether the IdP says the person passed a second factor (`amr` has
/// `mfa` or `otp`, RFC 8176).
pub fn idp_mfa(claims: &Map<String, Value>) -> bool {
    claims
        .get("amr")
        .and_then(Value::as_array)
        .is_some_and(|amr| {
            amr.iter()
                .any(|m| matches!(m.as_str(), Some("mfa" | "otp")))
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn claims(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn the_user_is_named_by_the_claim_and_an_unverified_email_names_nobody() {
        let c = claims(json!({"email": "a@x.example", "preferred_username": "a"}));
        assert_eq!(user_name(&c, "email"), Ok("a@x.example"));
        assert_eq!(user_name(&c, "preferred_username"), Ok("a"));
        assert_eq!(user_name(&c, "upn"), Err(TokenError::Missing("upn".into())));
        let c = claims(json!({"email": "a@x.example", "email_verified": false}));
        assert_eq!(user_name(&c, "email"), Err(TokenError::UnverifiedEmail));
    }

    #[test]
    fn idp_mfa_needs_mfa_or_otp_in_amr() {
        assert!(idp_mfa(&claims(json!({"amr": ["pwd", "mfa"]}))));
        assert!(idp_mfa(&claims(json!({"amr": ["otp"]}))));
        assert!(!idp_mfa(&claims(json!({"amr": ["pwd"]}))));
        assert!(!idp_mfa(&claims(json!({"amr": "mfa"}))));
        assert!(!idp_mfa(&claims(json!({}))));
    }

    #[test]
    fn only_rs256_and_es256_with_a_key_of_their_type() {
        let jwks: JwkSet = serde_json::from_value(json!({"keys": [
            {"kty": "RSA", "kid": "r", "n": "AQAB", "e": "AQAB"},
            {"kty": "EC", "kid": "e", "crv": "P-256", "x": "AA", "y": "AA"},
        ]}))
        .unwrap();
        let mut h = Header::new(Algorithm::RS256);
        assert!(key_for(&jwks, &h).is_some(), "the only RSA key, no kid");
        h.kid = Some("e".into());
        assert!(key_for(&jwks, &h).is_none(), "an EC key for RS256");
        h.alg = Algorithm::ES256;
        assert!(key_for(&jwks, &h).is_some());
        let hs = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &json!({"sub": "x"}),
            &jsonwebtoken::EncodingKey::from_secret(b"k"),
        )
        .unwrap();
        assert_eq!(
            header(&hs).err(),
            Some(TokenError::Algorithm(Algorithm::HS256))
        );
    }
}
