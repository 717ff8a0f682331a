//! Optional OpenID Connect login (`[portal.oidc]`): the authorization code
//! flow with PKCE (S256), `state` and `nonce`, against one identity
//! provider. Off unless configured.
//!
//! What is trusted: the IdP proves who a person is, nothing more. The
//! claim [`config::OidcSection::claim`] (default `email`) of a verified ID
//! token must equal the name of an existing, enabled portal user; users are
//! never created from a login, and role, tenants and language always come
//! from the portal's own user. MSSP roles (and customers with TOTP on)
//! still pass the portal's TOTP step, unless `trust_idp_mfa = true` and the
//! token's `amr` says the IdP did a second factor (`mfa` or `otp`).
//!
//! Parts: [`config`] (the section and its checks), [`pending`] (logins
//! under way, bound to the browser that started them), [`provider`] (the
//! IdP over HTTPS), [`id_token`] (the token's checks). The pages are in
//! [`crate::pages::oidc`].
//!
//! Crate choice: `jsonwebtoken` 9 checks signatures with ring, the crypto
//! the SOC already uses through rustls, and reads JWKs directly. Its 10+
//! releases offer only aws-lc-rs (a second crypto stack, built from C) or
//! RustCrypto's `rsa` as backends, and the `openidconnect` crate brings
//! those too plus its own HTTP client stack, where the workspace's
//! `reqwest` 0.13 with a ring rustls config already serves.
//!
//! Must never: accept a token from the browser (the ID token comes from
//! the token endpoint only), log a secret, or let a login finish without
//! the `state` it started with.

pub mod config;
pub mod id_token;
pub mod pending;
pub mod provider;

pub use config::OidcSection;

/// The configured IdP and the logins under way with it.
pub struct Oidc {
    pub provider: provider::Provider,
    pub pending: pending::Pending,
}

impl Oidc {
    pub fn new(section: OidcSection) -> Oidc {
        Oidc {
            provider: provider::Provider::new(section),
            pending: pending::Pending::default(),
        }
    }
}
