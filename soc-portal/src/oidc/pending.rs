//! Logins under way: what the portal sent the IdP (`state`, `nonce`, the
//! PKCE verifier), kept in the portal's memory until the browser comes back.
//!
//! Guarantees: every value is a fresh 256-bit random token; an entry is
//! used at most once (taken out on the first callback with its `state`,
//! whatever the outcome), lives [`TTL`] at most, and only the browser that
//! started the login can finish it: the start sets a random binding
//! cookie ([`COOKIE`]) whose SHA-256 the entry holds, so a `state` and
//! `code` planted in another browser (login CSRF) do not log it in. The
//! table holds at most [`MAX`] entries; when it is full new logins are
//! refused rather than old ones evicted.
//!
//! The binding cookie is `SameSite=Lax`, not `Strict` like the session's:
//! the IdP's redirect back is a cross-site top-level GET, on which browsers
//! send `Lax` cookies but not `Strict` ones. It carries no authority of its
//! own (without the `state` and a `code` from the IdP it is just noise).
//! Kept in memory, not in `portal.db`: a restart ends logins under way,
//! which costs a person one click.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};

use crate::auth;

/// The browser binding cookie.
pub const COOKIE: &str = "__Host-owlet_oidc";
/// How long a person has at the IdP.
pub const TTL: Duration = Duration::from_secs(600);
/// Most logins under way at once.
pub const MAX: usize = 4096;

/// What the start of a login sends out.
pub struct Started {
    pub state: String,
    pub nonce: String,
    /// `BASE64URL(SHA-256(verifier))` (PKCE S256).
    pub challenge: String,
    /// The binding cookie's value.
    pub browser: String,
}

/// What the callback needs to finish a login.
pub struct Finishing {
    pub nonce: String,
    pub verifier: String,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PendingError {
    #[error("too many sign-ins are under way; try again in a few minutes")]
    Full,
    #[error("this sign-in is unknown, expired (after 10 minutes) or was used already; start again")]
    Unknown,
    #[error("this sign-in was started in another browser; start again here")]
    OtherBrowser,
}

struct Entry {
    browser_hash: String,
    nonce: String,
    verifier: String,
    started: Instant,
}

#[derive(Default)]
pub struct Pending {
    entries: Mutex<HashMap<String, Entry>>,
}

impl Pending {
    /// Records a new login.
    pub fn start(&self) -> Result<Started, PendingError> {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries.retain(|_, e| e.started.elapsed() < TTL);
        if entries.len() >= MAX {
            return Err(PendingError::Full);
        }
        let (state, nonce, verifier, browser) =
            (auth::token(), auth::token(), auth::token(), auth::token());
        let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
        entries.insert(
            state.clone(),
            Entry {
                browser_hash: auth::sha256_hex(&browser),
                nonce: nonce.clone(),
                verifier,
                started: Instant::now(),
            },
        );
        Ok(Started {
            state,
            nonce,
            challenge,
            browser,
        })
    }

    /// Takes the login of `state` out, if `browser` (the binding cookie's
    /// value) is the one that started it.
    pub fn finish(&self, state: &str, browser: Option<&str>) -> Result<Finishing, PendingError> {
        let entry = self
            .entries
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(state)
            .filter(|e| e.started.elapsed() < TTL)
            .ok_or(PendingError::Unknown)?;
        let same = browser
            .is_some_and(|b| crate::session::same_token(&auth::sha256_hex(b), &entry.browser_hash));
        if !same {
            return Err(PendingError::OtherBrowser);
        }
        Ok(Finishing {
            nonce: entry.nonce,
            verifier: entry.verifier,
        })
    }
}

/// The `Set-Cookie` value binding the login to this browser.
pub fn cookie(browser: &str) -> String {
    format!(
        "{COOKIE}={browser}; Secure; HttpOnly; SameSite=Lax; Path=/; Max-Age={}",
        TTL.as_secs()
    )
}

/// The `Set-Cookie` value that removes it.
pub fn clear_cookie() -> String {
    format!("{COOKIE}=; Secure; HttpOnly; SameSite=Lax; Path=/; Max-Age=0")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_login_finishes_once_and_only_in_its_browser() {
        let pending = Pending::default();
        let a = pending.start().unwrap();
        assert_eq!(a.challenge.len(), 43);
        assert_eq!(
            pending.finish(&a.state, Some("other")).err(),
            Some(PendingError::OtherBrowser)
        );
        // Taken out by the failed attempt too.
        assert_eq!(
            pending.finish(&a.state, Some(&a.browser)).err(),
            Some(PendingError::Unknown)
        );
        let b = pending.start().unwrap();
        let done = pending.finish(&b.state, Some(&b.browser)).unwrap();
        assert_eq!(done.nonce, b.nonce);
        assert_eq!(
            URL_SAFE_NO_PAD.encode(Sha256::digest(done.verifier.as_bytes())),
            b.challenge
        );
        assert_eq!(
            pending.finish(&b.state, Some(&b.browser)).err(),
            Some(PendingError::Unknown)
        );
    }
}
