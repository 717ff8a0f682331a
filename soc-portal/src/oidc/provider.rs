//! The identity provider, spoken to over HTTPS: its discovery document,
//! its JWKS and its token endpoint.
//!
//! Guarantees: only HTTPS, verified against `ca_file` or the system's
//! roots (rustls with ring, as the rest of the SOC; no redirects followed,
//! answers bounded to [`MAX_BODY`] bytes, [`TIMEOUT`] per request); the
//! discovery document must name the configured issuer and HTTPS endpoints;
//! it and the JWKS are fetched at the first login (the portal starts while
//! the IdP is down) and kept, and the JWKS is fetched again once when a
//! token names a key it does not hold (the IdP rotated its keys). The ID
//! token comes only from the token endpoint (never from the browser) and
//! passes every check of [`super::id_token`] before a claim is returned.
//! The client secret is read from its file at each exchange (rotation
//! needs no restart) and never logged.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use jsonwebtoken::jwk::JwkSet;
use reqwest::Url;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};
use tokio::sync::Mutex;

use super::config::{OidcSection, read_client_secret};
use super::id_token::{self, Expected, TokenError};
use super::pending::{Finishing, Started};

/// Largest answer read from the IdP.
pub const MAX_BODY: usize = 1 << 20;
/// Longest wait for one request to the IdP.
pub const TIMEOUT: Duration = Duration::from_secs(10);

/// Why a login could not be completed with the IdP.
#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    #[error("the identity provider's {what} at {url} cannot be reached: {message}")]
    Unreachable {
        what: &'static str,
        url: String,
        message: String,
    },
    #[error("the identity provider's {what} at {url} answered {status}: {body}")]
    Status {
        what: &'static str,
        url: String,
        status: u16,
        body: String,
    },
    #[error(
        "the identity provider's {what} at {url} is not what OpenID Connect expects: {message}"
    )]
    Invalid {
        what: &'static str,
        url: String,
        message: String,
    },
    #[error("portal.oidc: {0}")]
    Setup(String),
    #[error(transparent)]
    Token(#[from] TokenError),
}

/// `{issuer}/.well-known/openid-configuration`, the parts the portal uses.
#[derive(Debug, Clone, Deserialize)]
struct Discovery {
    issuer: String,
    authorization_endpoint: String,
    token_endpoint: String,
    jwks_uri: String,
}

#[derive(Default)]
struct Cache {
    client: Option<reqwest::Client>,
    discovery: Option<Discovery>,
    jwks: Option<Arc<JwkSet>>,
}

/// One configured IdP.
pub struct Provider {
    section: OidcSection,
    cache: Mutex<Cache>,
}

impl Provider {
    pub fn new(section: OidcSection) -> Provider {
        Provider {
            section,
            cache: Mutex::default(),
        }
    }

    pub fn section(&self) -> &OidcSection {
        &self.section
    }

    /// Where to send the browser for the login `started`.
    pub async fn authorize_url(&self, started: &Started) -> Result<String, ProviderError> {
        let endpoint = self.discovery().await?.authorization_endpoint;
        let mut url = Url::parse(&endpoint).map_err(|e| ProviderError::Invalid {
            what: "authorization_endpoint",
            url: endpoint.clone(),
            message: e.to_string(),
        })?;
        url.query_pairs_mut()
            .append_pair("response_type", "code")
            .append_pair("client_id", &self.section.client_id)
            .append_pair("redirect_uri", &self.section.redirect_url)
            .append_pair("scope", "openid email profile")
            .append_pair("state", &started.state)
            .append_pair("nonce", &started.nonce)
            .append_pair("code_challenge", &started.challenge)
            .append_pair("code_challenge_method", "S256");
        Ok(url.into())
    }

    /// Exchanges `code` for an ID token and returns its claims once it
    /// passed every check.
    pub async fn claims(
        &self,
        code: &str,
        finishing: &Finishing,
    ) -> Result<Map<String, Value>, ProviderError> {
        let discovery = self.discovery().await?;
        let secret =
            read_client_secret(&self.section.client_secret_file).map_err(ProviderError::Setup)?;
        // RFC 6749 2.3.1: both parts form-encoded, then Basic.
        let encode = |s: &str| form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
        let basic = STANDARD.encode(format!(
            "{}:{}",
            encode(&self.section.client_id),
            encode(&secret)
        ));
        let body = form_urlencoded::Serializer::new(String::new())
            .append_pair("grant_type", "authorization_code")
            .append_pair("code", code)
            .append_pair("redirect_uri", &self.section.redirect_url)
            .append_pair("code_verifier", &finishing.verifier)
            .finish();
        #[derive(Deserialize)]
        struct TokenAnswer {
            id_token: String,
        }
        let request = self
            .client()
            .await?
            .post(&discovery.token_endpoint)
            .header(AUTHORIZATION, format!("Basic {basic}"))
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(body);
        let answer: TokenAnswer =
            fetch("token endpoint", &discovery.token_endpoint, request).await?;
        let token = answer.id_token;
        let header = id_token::header(&token)?;
        let jwks = self.jwks(false).await?;
        let jwks = match id_token::key_for(&jwks, &header) {
            Some(_) => jwks,
            None => self.jwks(true).await?,
        };
        let key = id_token::key_for(&jwks, &header)
            .ok_or_else(|| TokenError::UnknownKey(header.kid.clone().unwrap_or_default()))?;
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        let expected = Expected {
            issuer: &self.section.issuer,
            client_id: &self.section.client_id,
            nonce: &finishing.nonce,
            now,
        };
        Ok(id_token::verify(&token, &header, key, &expected)?)
    }

    async fn client(&self) -> Result<reqwest::Client, ProviderError> {
        let mut cache = self.cache.lock().await;
        if let Some(client) = &cache.client {
            return Ok(client.clone());
        }
        let client = build_client(&self.section)?;
        cache.client = Some(client.clone());
        Ok(client)
    }

    async fn discovery(&self) -> Result<Discovery, ProviderError> {
        if let Some(d) = &self.cache.lock().await.discovery {
            return Ok(d.clone());
        }
        let url = format!(
            "{}/.well-known/openid-configuration",
            self.section.issuer.trim_end_matches('/')
        );
        let found: Discovery = fetch("discovery", &url, self.client().await?.get(&url)).await?;
        let invalid = |message: String| ProviderError::Invalid {
            what: "discovery",
            url: url.clone(),
            message,
        };
        if found.issuer != self.section.issuer {
            return Err(invalid(format!(
                "it names the issuer {:?}, not {:?} (portal.oidc.issuer must be the issuer exactly)",
                found.issuer, self.section.issuer
            )));
        }
        for endpoint in [
            &found.authorization_endpoint,
            &found.token_endpoint,
            &found.jwks_uri,
        ] {
            if !Url::parse(endpoint).is_ok_and(|u| u.scheme() == "https") {
                return Err(invalid(format!("{endpoint:?} is not an https:// URL")));
            }
        }
        self.cache.lock().await.discovery = Some(found.clone());
        Ok(found)
    }

    /// The IdP's keys: kept, or fetched when there are none yet or `again`.
    async fn jwks(&self, again: bool) -> Result<Arc<JwkSet>, ProviderError> {
        if !again && let Some(jwks) = &self.cache.lock().await.jwks {
            return Ok(jwks.clone());
        }
        let url = self.discovery().await?.jwks_uri;
        let jwks: Arc<JwkSet> =
            Arc::new(fetch("JWKS", &url, self.client().await?.get(&url)).await?);
        self.cache.lock().await.jwks = Some(jwks.clone());
        Ok(jwks)
    }
}

/// The HTTPS client: `ca_file`'s roots or the system's, no redirects.
fn build_client(section: &OidcSection) -> Result<reqwest::Client, ProviderError> {
    let setup = |m: String| ProviderError::Setup(m);
    let mut roots = rustls::RootCertStore::empty();
    match &section.ca_file {
        Some(path) => {
            for cert in owlet_tls::load_certs(path).map_err(|e| setup(format!("ca_file: {e}")))? {
                roots.add(cert).map_err(|e| {
                    setup(format!(
                        "ca_file {}: not a CA certificate: {e}",
                        path.display()
                    ))
                })?;
            }
        }
        None => {
            let (added, _) =
                roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
            if added == 0 {
                return Err(setup(
                    "no system trust roots (install ca-certificates) and no ca_file".into(),
                ));
            }
        }
    }
    let tls = rustls::ClientConfig::builder_with_provider(owlet_tls::config::provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| setup(format!("TLS setup: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .redirect(reqwest::redirect::Policy::none())
        .timeout(TIMEOUT)
        .build()
        .map_err(|e| setup(format!("HTTP client: {e}")))
}

/// Sends `request` and reads a JSON answer of at most [`MAX_BODY`] bytes.
async fn fetch<T: DeserializeOwned>(
    what: &'static str,
    url: &str,
    request: reqwest::RequestBuilder,
) -> Result<T, ProviderError> {
    let unreachable = |e: reqwest::Error| ProviderError::Unreachable {
        what,
        url: url.to_string(),
        message: describe(&e),
    };
    let mut response = request.send().await.map_err(unreachable)?;
    let status = response.status();
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(unreachable)? {
        if body.len() + chunk.len() > MAX_BODY {
            return Err(ProviderError::Invalid {
                what,
                url: url.to_string(),
                message: format!("the answer is longer than {MAX_BODY} bytes"),
            });
        }
        body.extend_from_slice(&chunk);
    }
    if !status.is_success() {
        // An OAuth error answer is short JSON ({"error": ...}); show its start.
        let text = String::from_utf8_lossy(&body);
        return Err(ProviderError::Status {
            what,
            url: url.to_string(),
            status: status.as_u16(),
            body: text.chars().take(200).collect(),
        });
    }
    serde_json::from_slice(&body).map_err(|e| ProviderError::Invalid {
        what,
        url: url.to_string(),
        message: e.to_string(),
    })
}

/// A reqwest error with its causes (the TLS reason is two levels down).
fn describe(e: &reqwest::Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
