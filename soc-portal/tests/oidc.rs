//! OIDC login against a real identity provider on loopback: a small IdP
//! written here (axum over HTTPS: discovery, JWKS, authorize, token) that
//! signs ID tokens with keys of this test (RS256, ES256), and the portal's
//! real router. Each refusal case changes one thing the IdP does and
//! checks that nobody is logged in, the page says why and the audit log
//! has it; the good cases check the session and the path audited.

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::extract::{Form, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use common::{Fixture, csrf_in, set_session};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::service::TowerToHyperService;
use jsonwebtoken::{Algorithm, EncodingKey};
use owlet_soc_portal::Role;
use owlet_soc_portal::oidc::OidcSection;
use owlet_soc_portal::session;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

const CLIENT_ID: &str = "owlet-portal";
const SECRET: &str = "idp-client-secret";
const REDIRECT: &str = "https://portal.example/login/oidc/callback";
/// The test IdP's RSA key (PKCS#1), made for this test only.
const RSA_KEY: &[u8] = include_bytes!("data/oidc-idp-rs256.test-key.pem");

/// What the IdP does, changed per case.
#[derive(Clone)]
struct Knobs {
    alg: Algorithm,
    email: String,
    aud: Value,
    iss: Option<String>,
    /// `exp` relative to now, seconds.
    exp_in: i64,
    nonce: Option<String>,
    amr: Vec<&'static str>,
    /// Change the payload after signing (the signature no longer fits).
    tamper: bool,
    /// The IdP's keys are named `rsa-N` / `ec-N`: a new N is a rotation.
    key_generation: u32,
}

impl Knobs {
    fn for_user(email: &str) -> Knobs {
        Knobs {
            alg: Algorithm::RS256,
            email: email.into(),
            aud: json!(CLIENT_ID),
            iss: None,
            exp_in: 300,
            nonce: None,
            amr: vec!["pwd"],
            tamper: false,
            key_generation: 1,
        }
    }
}

struct Idp {
    base: String,
    knobs: Mutex<Knobs>,
    /// code → (nonce, PKCE challenge)
    codes: Mutex<HashMap<String, (String, String)>>,
    rsa_der: Vec<u8>,
    ec_pkcs8: Vec<u8>,
    /// The JWKS with kids `rsa` / `ec` (the generation is added as served).
    jwks: Value,
    jwks_fetches: AtomicUsize,
}

impl Idp {
    fn id_token(&self, nonce: &str) -> String {
        let k = self.knobs.lock().unwrap().clone();
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        let claims = json!({
            "iss": k.iss.clone().unwrap_or_else(|| self.base.clone()),
            "sub": "idp-subject-1",
            "aud": k.aud,
            "exp": now + k.exp_in,
            "iat": now.min(now + k.exp_in - 1),
            "nonce": k.nonce.clone().unwrap_or_else(|| nonce.to_string()),
            "email": k.email,
            "email_verified": true,
            "amr": k.amr,
        });
        let (kid, key) = match k.alg {
            Algorithm::ES256 => ("ec", EncodingKey::from_ec_der(&self.ec_pkcs8)),
            _ => ("rsa", EncodingKey::from_rsa_der(&self.rsa_der)),
        };
        let mut h = jsonwebtoken::Header::new(k.alg);
        h.kid = Some(format!("{kid}-{}", k.key_generation));
        let token = jsonwebtoken::encode(&h, &claims, &key).unwrap();
        if !k.tamper {
            return token;
        }
        let parts: Vec<&str> = token.split('.').collect();
        let mut payload: Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
        payload["email"] = json!("mssp-admin");
        let payload = URL_SAFE_NO_PAD.encode(payload.to_string());
        format!("{}.{payload}.{}", parts[0], parts[2])
    }
}

async fn discovery(State(idp): State<Arc<Idp>>) -> Response {
    axum::Json(json!({
        "issuer": idp.base,
        "authorization_endpoint": format!("{}/authorize", idp.base),
        "token_endpoint": format!("{}/token", idp.base),
        "jwks_uri": format!("{}/jwks", idp.base),
    }))
    .into_response()
}

async fn keys(State(idp): State<Arc<Idp>>) -> Response {
    idp.jwks_fetches.fetch_add(1, Ordering::SeqCst);
    let generation = idp.knobs.lock().unwrap().key_generation;
    let mut jwks = idp.jwks.clone();
    for key in jwks["keys"].as_array_mut().unwrap() {
        key["kid"] = json!(format!("{}-{generation}", key["kid"].as_str().unwrap()));
    }
    axum::Json(jwks).into_response()
}

async fn authorize(
    State(idp): State<Arc<Idp>>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    assert_eq!(q["client_id"], CLIENT_ID);
    assert_eq!(q["redirect_uri"], REDIRECT);
    assert_eq!(q["response_type"], "code");
    assert_eq!(q["code_challenge_method"], "S256");
    assert!(q["scope"].split(' ').any(|s| s == "openid"));
    let code = format!("code-{}", idp.codes.lock().unwrap().len());
    idp.codes.lock().unwrap().insert(
        code.clone(),
        (q["nonce"].clone(), q["code_challenge"].clone()),
    );
    Redirect::to(&format!("{REDIRECT}?code={code}&state={}", q["state"])).into_response()
}

async fn token(
    State(idp): State<Arc<Idp>>,
    headers: HeaderMap,
    Form(f): Form<HashMap<String, String>>,
) -> Response {
    let basic = format!("Basic {}", STANDARD.encode(format!("{CLIENT_ID}:{SECRET}")));
    if headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        != Some(&basic)
    {
        return (StatusCode::UNAUTHORIZED, r#"{"error":"invalid_client"}"#).into_response();
    }
    let Some((nonce, challenge)) = idp.codes.lock().unwrap().remove(&f["code"]) else {
        return (StatusCode::BAD_REQUEST, r#"{"error":"invalid_grant"}"#).into_response();
    };
    let verifier = URL_SAFE_NO_PAD.encode(Sha256::digest(f["code_verifier"].as_bytes()));
    assert_eq!(verifier, challenge, "PKCE S256");
    assert_eq!(f["grant_type"], "authorization_code");
    assert_eq!(f["redirect_uri"], REDIRECT);
    axum::Json(
        json!({"access_token": "x", "token_type": "Bearer", "id_token": idp.id_token(&nonce)}),
    )
    .into_response()
}

/// Starts the IdP on a loopback port over HTTPS; its certificate's PEM.
async fn start_idp() -> (Arc<Idp>, String) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    let cert = rcgen::generate_simple_self_signed(vec!["127.0.0.1".into()]).unwrap();
    let tls = rustls::ServerConfig::builder_with_provider(owlet_tls::config::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.cert.der().clone()],
            rustls::pki_types::PrivateKeyDer::Pkcs8(cert.signing_key.serialize_der().into()),
        )
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));

    use rustls::pki_types::pem::PemObject;
    let rsa_der = rustls::pki_types::PrivatePkcs1KeyDer::from_pem_slice(RSA_KEY)
        .unwrap()
        .secret_pkcs1_der()
        .to_vec();
    let rsa = ring::signature::RsaKeyPair::from_der(&rsa_der).unwrap();
    let rsa_public = ring::rsa::PublicKeyComponents::<Vec<u8>>::from(rsa.public());
    let ec = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let point = ec.public_key_raw();
    let b64 = |b: &[u8]| URL_SAFE_NO_PAD.encode(b);
    let jwks = json!({"keys": [
        {"kty": "RSA", "kid": "rsa", "use": "sig", "alg": "RS256",
         "n": b64(&rsa_public.n), "e": b64(&rsa_public.e)},
        {"kty": "EC", "kid": "ec", "use": "sig", "alg": "ES256", "crv": "P-256",
         "x": b64(&point[1..33]), "y": b64(&point[33..65])},
    ]});
    let idp = Arc::new(Idp {
        base: format!("https://{addr}"),
        knobs: Mutex::new(Knobs::for_user("nobody")),
        codes: Mutex::default(),
        rsa_der,
        ec_pkcs8: ec.serialize_der(),
        jwks,
        jwks_fetches: AtomicUsize::new(0),
    });
    let app = Router::new()
        .route("/.well-known/openid-configuration", get(discovery))
        .route("/jwks", get(keys))
        .route("/authorize", get(authorize))
        .route("/token", post(token))
        .with_state(idp.clone());
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let (acceptor, app) = (acceptor.clone(), app.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tls), TowerToHyperService::new(app))
                    .await;
            });
        }
    });
    (idp, cert.cert.pem())
}

/// A portal with OIDC against the test IdP, and its users:
/// carol (customer-viewer), ann (mssp-analyst), dave (disabled).
struct Setup {
    fx: Fixture,
    idp: Arc<Idp>,
    browser: reqwest::Client,
    _files: tempfile::TempDir,
}

async fn setup(trust_idp_mfa: bool) -> Setup {
    let (idp, ca_pem) = start_idp().await;
    let files = tempfile::tempdir().unwrap();
    let (secret, ca) = (files.path().join("secret"), files.path().join("idp-ca.pem"));
    owlet_tls::files::write_secret_file(&secret, format!("{SECRET}\n").as_bytes()).unwrap();
    std::fs::write(&ca, &ca_pem).unwrap();
    let section = OidcSection {
        issuer: idp.base.clone(),
        client_id: CLIENT_ID.into(),
        client_secret_file: secret,
        redirect_url: REDIRECT.into(),
        claim: "email".into(),
        ca_file: Some(ca),
        trust_idp_mfa,
        display_name: Some("Test IdP".into()),
    };
    assert!(section.problems().is_empty() && section.check_files().is_empty());
    let fx = Fixture::with_settings(|s| s.oidc = Some(section));
    fx.user("carol@acme.example", Role::CustomerViewer, "en");
    fx.user("ann@mssp.example", Role::MsspAnalyst, "en");
    fx.user("dave@acme.example", Role::CustomerViewer, "en");
    owlet_soc_portal::users::set_disabled(&fx.state.0.db.lock(), "dave@acme.example", true)
        .unwrap();
    let roots = {
        let mut r = rustls::RootCertStore::empty();
        use rustls::pki_types::pem::PemObject;
        r.add(rustls::pki_types::CertificateDer::from_pem_slice(ca_pem.as_bytes()).unwrap())
            .unwrap();
        r
    };
    let tls = rustls::ClientConfig::builder_with_provider(owlet_tls::config::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let browser = reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    Setup {
        fx,
        idp,
        browser,
        _files: files,
    }
}

fn cookie_set(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|v| v.strip_prefix(&format!("{name}=")))
        .map(|v| v.split(';').next().unwrap_or("").to_string())
        .filter(|v| !v.is_empty())
}

fn location(headers: &HeaderMap) -> String {
    headers[header::LOCATION].to_str().unwrap().to_string()
}

impl Setup {
    /// Login page → button → IdP → the callback's path and query, and the
    /// binding cookie (`name=value`).
    async fn to_idp_and_back(&self) -> (String, String) {
        let (status, body, r) = self.fx.get("/login", None).await;
        assert_eq!(status, 200);
        assert!(body.contains("Sign in with Test IdP"), "{body}");
        let login = cookie_set(r.headers(), session::LOGIN_COOKIE).unwrap();
        let cookie = format!("{}={login}", session::LOGIN_COOKIE);
        let form = format!("csrf={}", csrf_in(&body));
        let (status, _, r) = self.fx.post("/login/oidc", Some(&cookie), &form).await;
        assert_eq!(status, 303);
        let to_idp = location(r.headers());
        assert!(
            to_idp.starts_with(&format!("{}/authorize?", self.idp.base)),
            "{to_idp}"
        );
        let binding = cookie_set(r.headers(), "__Host-owlet_oidc").unwrap();
        let back = self.browser.get(&to_idp).send().await.unwrap();
        assert_eq!(back.status().as_u16(), 303);
        let back = location(back.headers());
        let path = back
            .strip_prefix("https://portal.example")
            .unwrap()
            .to_string();
        (path, format!("__Host-owlet_oidc={binding}"))
    }

    /// A whole login as the IdP is set now: status, page, response.
    async fn login(&self) -> (u16, String, axum::http::Response<()>) {
        let (path, binding) = self.to_idp_and_back().await;
        self.fx.get(&path, Some(&binding)).await
    }

    fn set(&self, knobs: Knobs) {
        *self.idp.knobs.lock().unwrap() = knobs;
    }

    /// Asserts an audit entry `action` whose detail contains `part`.
    fn audited(&self, action: &str, part: &str) {
        let all = owlet_soc_portal::audit::list(&self.fx.state.0.db.lock(), None, 100).unwrap();
        assert!(
            all.iter()
                .any(|e| e.action == action && e.detail.contains(part)),
            "no audit entry {action} with {part:?} in {:?}",
            all.iter()
                .map(|e| (&e.action, &e.detail))
                .collect::<Vec<_>>()
        );
    }

    /// The login was refused: 401, no session, `why` on the page and in
    /// the audit log.
    async fn refused(&self, why: &str) {
        let (status, body, r) = self.login().await;
        assert_eq!(status, 401, "{body}");
        assert!(set_session(&r).is_none(), "a session for a refused login");
        assert!(body.contains(why), "page lacks {why:?}\n{body}");
        self.audited("login.failed", why);
    }
}

/// A session cookie that reaches the account page as `name`.
async fn logged_in_as(fx: &Fixture, r: &axum::http::Response<()>, name: &str) {
    let sid = set_session(r).expect("a session cookie");
    let (status, body, _) = fx
        .get("/account", Some(&format!("{}={sid}", session::COOKIE)))
        .await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains(name), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_customer_logs_in_with_rs256_and_es256() {
    let s = setup(false).await;
    for alg in [Algorithm::RS256, Algorithm::ES256] {
        s.set(Knobs {
            alg,
            ..Knobs::for_user("carol@acme.example")
        });
        let (status, body, r) = s.login().await;
        assert_eq!(status, 200, "{alg:?}: {body}");
        // Not a redirect: the Strict session cookie must reach `/` on a
        // same-site navigation.
        assert!(
            body.contains(r#"http-equiv="refresh" content="0; url=/""#),
            "{body}"
        );
        logged_in_as(&s.fx, &r, "carol@acme.example").await;
    }
    s.audited("login", &format!("OIDC ({})", s.idp.base));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_jwks_is_kept_and_fetched_again_once_when_the_idp_rotates_its_keys() {
    let s = setup(false).await;
    let carol = Knobs::for_user("carol@acme.example");
    for generation in [1, 1, 2] {
        s.set(Knobs {
            key_generation: generation,
            ..carol.clone()
        });
        let (status, body, r) = s.login().await;
        assert_eq!(status, 200, "key generation {generation}: {body}");
        logged_in_as(&s.fx, &r, "carol@acme.example").await;
    }
    // Once at the first login, once for the unknown kid `rsa-2`.
    assert_eq!(s.idp.jwks_fetches.load(Ordering::SeqCst), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_that_fail_a_check_log_nobody_in() {
    let s = setup(false).await;
    let carol = Knobs::for_user("carol@acme.example");
    let cases = [
        (
            Knobs {
                tamper: true,
                ..carol.clone()
            },
            "signature does not verify",
        ),
        (
            Knobs {
                aud: json!("another-client"),
                ..carol.clone()
            },
            "aud lacks client id",
        ),
        (
            Knobs {
                aud: json!([CLIENT_ID, "another"]),
                ..carol.clone()
            },
            "several audiences",
        ),
        (
            Knobs {
                iss: Some("https://evil.example".into()),
                ..carol.clone()
            },
            "not issued by",
        ),
        (
            Knobs {
                exp_in: -600,
                ..carol.clone()
            },
            "has expired",
        ),
        (
            Knobs {
                nonce: Some("not-the-nonce".into()),
                ..carol
            },
            "nonce is not the one",
        ),
    ];
    for (knobs, why) in cases {
        s.set(knobs);
        s.refused(why).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_is_one_use_and_bound_to_the_browser() {
    let s = setup(false).await;
    s.set(Knobs::for_user("carol@acme.example"));
    let (path, binding) = s.to_idp_and_back().await;
    // Another browser (no binding cookie, or another one) with this state.
    let (status, body, r) = s.fx.get(&path, Some("__Host-owlet_oidc=x")).await;
    assert_eq!(status, 401, "{body}");
    assert!(set_session(&r).is_none());
    assert!(body.contains("started in another browser"), "{body}");
    // Replayed in the right browser: the state was used up.
    let (status, body, r) = s.fx.get(&path, Some(&binding)).await;
    assert_eq!(status, 401, "{body}");
    assert!(set_session(&r).is_none());
    assert!(body.contains("used already"), "{body}");
    // A state the portal never issued.
    let (path, binding) = s.to_idp_and_back().await;
    let forged = regex::Regex::new("state=[0-9a-f]+")
        .unwrap()
        .replace(&path, "state=00ff")
        .to_string();
    let (status, body, _) = s.fx.get(&forged, Some(&binding)).await;
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("used already"), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_existing_enabled_users_get_in() {
    let s = setup(false).await;
    s.set(Knobs::for_user("mallory@acme.example"));
    s.refused("no enabled portal user has this name").await;
    s.set(Knobs::for_user("dave@acme.example"));
    s.refused("no enabled portal user has this name").await;
    assert!(
        owlet_soc_portal::users::find(&s.fx.state.0.db.lock(), "mallory@acme.example")
            .unwrap()
            .is_none(),
        "a user was provisioned from the IdP"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_mssp_user_still_passes_totp_unless_idp_mfa_is_trusted() {
    let s = setup(false).await;
    s.set(Knobs {
        amr: vec!["pwd", "mfa"],
        ..Knobs::for_user("ann@mssp.example")
    });
    let (status, body, r) = s.login().await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("url=/login/totp"), "{body}");
    let cookie = format!("{}={}", session::COOKIE, set_session(&r).unwrap());
    let (status, _, r) = s.fx.get("/", Some(&cookie)).await;
    assert_eq!(
        (status, location(r.headers())),
        (303, "/login".into()),
        "logged in without TOTP"
    );
    let (status, body, _) = s.fx.get("/login/totp", Some(&cookie)).await;
    assert_eq!(status, 200);
    assert!(body.contains("name=\"code\""), "{body}");
    s.audited("login.oidc", "portal TOTP next");

    let s = setup(true).await;
    // Trusted, but the IdP did no second factor: TOTP still.
    s.set(Knobs::for_user("ann@mssp.example"));
    let (_, body, _) = s.login().await;
    assert!(body.contains("url=/login/totp"), "{body}");
    s.set(Knobs {
        amr: vec!["pwd", "otp"],
        ..Knobs::for_user("ann@mssp.example")
    });
    let (status, body, r) = s.login().await;
    assert_eq!(status, 200, "{body}");
    logged_in_as(&s.fx, &r, "ann@mssp.example").await;
    s.audited("login", "portal TOTP skipped");
}
