//! Sensors' certificates (mssp-admin only, by the route table): the CA's
//! register (tenant, agent, serial, expiry, revocation), and issue, renew
//! and revoke through the `owlet-ca` crate, as `owlet-soc ca issue / renew
//! / revoke` do, with the CA directory of `[portal] ca_dir`.
//!
//! An issued or renewed certificate is handed over as a tar bundle with
//! what `ca issue` writes (`owlet.toml`, `agent.pem`, `agent.key` 0600,
//! `ca.pem`, `soc.pem`) that can be downloaded once. Its `owlet.toml` comes
//! from [`owlet_ca::agent_config`] as `ca issue`'s does, with the packaged
//! service's paths, and names the SOC by [`crate::Settings::soc_address`]
//! (why a setting, and its default, are said there); it is made, and
//! checked against the SOC's certificate, before the certificate is issued,
//! so an address that cannot work issues nothing. The bundle it is kept in
//! memory only, under a random token, for [`BUNDLE_TTL`]; the files `ca`
//! writes go to a private temporary directory in RAM (`/dev/shm`, else
//! beside `portal.db`) removed before the page is shown. Every action is audited under the sensor's tenant.
//!
//! Must never: keep an agent's key on disk or hand it out twice, or run
//! without saying what is wrong when the CA cannot be used.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use askama::Template;
use axum::Extension;
use axum::extract::{Form, Path as UrlPath, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use owlet_ca::{Reason, Selection, agent_config};
use owlet_tls::Identity;
use serde::Deserialize;

use crate::web::{AppState, Ctx, Frame, PageError, render};

/// How long an unfetched bundle is kept.
pub const BUNDLE_TTL: Duration = Duration::from_secs(15 * 60);

/// Default and longest validity of a sensor's certificate, days.
const DEFAULT_DAYS: u32 = 365;
const MAX_DAYS: u32 = 825;

/// Bundles waiting for their one download.
#[derive(Default)]
pub struct Bundles(Mutex<HashMap<String, Bundle>>);

struct Bundle {
    file_name: String,
    tenant: String,
    tar: Vec<u8>,
    made: Instant,
}

impl Bundles {
    fn put(&self, bundle: Bundle) -> String {
        let token = crate::auth::token();
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        map.retain(|_, b| b.made.elapsed() < BUNDLE_TTL);
        map.insert(token.clone(), bundle);
        token
    }

    fn take(&self, token: &str) -> Option<Bundle> {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        map.remove(token).filter(|b| b.made.elapsed() < BUNDLE_TTL)
    }
}

/// The CA directory, if it is usable; else what is wrong and the fix.
fn ca_dir(s: &crate::web::Inner) -> Result<PathBuf, String> {
    let Some(dir) = s.settings.ca_dir.clone() else {
        return Err(
            "no CA directory: set [portal] ca_dir in soc.toml to the directory of `owlet-soc ca init` \
             (or [server] client_ca to its ca.pem) and restart the portal. In the scaled-out SOC \
             (portal.toml) the CA directory must be on the portal's host: set [portal] ca_dir and \
             soc_address there, or issue on the CA host with `owlet-soc ca issue`"
                .into(),
        );
    };
    let key = dir.join(owlet_ca::CA_KEY_FILE);
    if let Err(e) = owlet_tls::files::read_private_key_pem(&key) {
        return Err(format!(
            "the portal cannot use the CA key: {e}. Fix: run `owlet-soc portal` as the user that owns {} \
             (the one that ran `owlet-soc ca init`), with {} mode 0600; or issue on the CA host with \
             `owlet-soc ca issue`",
            dir.display(),
            key.display()
        ));
    }
    Ok(dir)
}

pub struct CertRow {
    pub tenant: String,
    pub agent: String,
    pub serial: String,
    pub not_after: String,
    pub revoked: String,
    pub live: bool,
}

#[derive(Template)]
#[template(path = "sensors.html")]
struct SensorsPage {
    f: Frame,
    problem: String,
    certs: Vec<CertRow>,
    reasons: Vec<&'static str>,
    /// A bundle just made: (token, what it is).
    bundle: Option<(String, String)>,
    done: String,
}

fn us(t: time::OffsetDateTime) -> i64 {
    (t.unix_timestamp_nanos() / 1000) as i64
}

const REASONS: [(&str, Reason); 6] = [
    ("superseded", Reason::Superseded),
    ("key-compromise", Reason::KeyCompromise),
    ("cessation-of-operation", Reason::CessationOfOperation),
    ("affiliation-changed", Reason::AffiliationChanged),
    ("privilege-withdrawn", Reason::PrivilegeWithdrawn),
    ("unspecified", Reason::Unspecified),
];

fn page(
    s: &crate::web::Inner,
    ctx: &Ctx,
    bundle: Option<(String, String)>,
    done: String,
) -> Result<Response, PageError> {
    let (problem, certs) = match ca_dir(s) {
        Err(problem) => (problem, Vec::new()),
        Ok(dir) => {
            let now = time::OffsetDateTime::now_utc();
            let register = owlet_ca::register::read(&dir.join(owlet_ca::register::REGISTER_FILE))
                .map_err(|e| PageError::Internal(e.to_string()))?;
            let mut certs: Vec<CertRow> = register
                .certificates
                .iter()
                .map(|c| CertRow {
                    tenant: c.tenant.clone(),
                    agent: c.agent.clone(),
                    serial: c.serial.clone(),
                    not_after: ctx.show(us(c.not_after)),
                    revoked: c.revoked_at.map_or_else(String::new, |t| ctx.show(us(t))),
                    live: c.is_live(now),
                })
                .collect();
            certs.sort_by(|a, b| (&a.tenant, &a.agent).cmp(&(&b.tenant, &b.agent)));
            (String::new(), certs)
        }
    };
    render(&SensorsPage {
        f: Frame::new(ctx, "sensors.title"),
        problem,
        certs,
        reasons: REASONS.iter().map(|r| r.0).collect(),
        bundle,
        done,
    })
}

pub async fn list(
    State(state): State<AppState>,
    Extension(ctx): Extension<Ctx>,
) -> Result<Response, PageError> {
    state
        .blocking(move |s| page(s, &ctx, None, String::new()))
        .await
}

/// The fields of every action's form (each uses its own).
#[derive(Deserialize)]
pub struct ActionForm {
    #[serde(default)]
    tenant: String,
    #[serde(default)]
    agent: String,
    #[serde(default)]
    days: String,
    #[serde(default)]
    revoke_old: Option<String>,
    #[serde(default)]
    serial: String,
    #[serde(default)]
    reason: String,
    #[serde(default)]
    token: String,
}

impl ActionForm {
    fn identity(&self) -> Result<Identity, PageError> {
        Identity::new(self.tenant.trim(), self.agent.trim())
            .map_err(|e| PageError::BadRequest(e.to_string()))
    }

    fn days(&self) -> Result<u32, PageError> {
        match crate::pages::given(&self.days) {
            None => Ok(DEFAULT_DAYS),
            Some(d) => d
                .parse::<u32>()
                .ok()
                .filter(|d| (1..=MAX_DAYS).contains(d))
                .ok_or_else(|| {
                    PageError::BadRequest(format!(
                        "validity \"{d}\": give whole days from 1 to {MAX_DAYS}"
                    ))
                }),
        }
    }
}

/// The sensor's `owlet.toml` (see the module doc).
fn agent_config(
    s: &crate::web::Inner,
    ca_dir: &Path,
    identity: &Identity,
) -> Result<String, PageError> {
    let address = s.settings.soc_address.as_str();
    let unspecified = owlet_tls::names::split_host_port(address)
        .and_then(|(host, _)| host.parse::<std::net::IpAddr>().ok())
        .is_some_and(|ip| ip.is_unspecified());
    if unspecified {
        return Err(PageError::BadRequest(format!(
            "the SOC address {address} (from [server] listen) is no address a sensor can connect to: \
             set [portal] soc_address = \"HOST:PORT\" in soc.toml to the name or address sensors reach \
             the SOC by, and restart the portal"
        )));
    }
    let (state_dir, socket) = agent_config::Layout::System
        .paths(ca_dir)
        .map_err(|e| PageError::Internal(e.to_string()))?;
    let options = agent_config::AgentConfigOptions {
        written_by: "the SOC portal (/admin/sensors)",
        soc_address: address,
        server_name: None,
        hw_profile: agent_config::DEFAULT_HW_PROFILE,
        state_dir: &state_dir,
        socket: &socket,
        status_interval: agent_config::DEFAULT_STATUS_INTERVAL,
    };
    agent_config::agent_config(ca_dir, identity, &options)
        .map(|c| c.text)
        .map_err(|e| {
            PageError::BadRequest(format!(
                "owlet.toml for {identity} with the SOC address {address} ([portal] soc_address, \
                 else [server] listen; `--soc` below is that setting): {e}"
            ))
        })
}

/// `owlet.toml` and the files `ca` wrote into `out`, as a tar
/// (`TENANT-AGENT/…`).
fn bundle_of(
    out: &Path,
    ca_dir: &Path,
    identity: &Identity,
    config: &str,
) -> Result<Vec<u8>, PageError> {
    let io = |e: std::io::Error| PageError::Internal(format!("certificate bundle: {e}"));
    let top = format!("{}-{}", identity.tenant, identity.agent_id);
    let mut tar = tar::Builder::new(Vec::new());
    let file = |name: &'static str, from: &Path, mode: u32| {
        std::fs::read(from.join(name)).map(|bytes| (name, bytes, mode))
    };
    for (name, bytes, mode) in [
        Ok((
            agent_config::AGENT_CONFIG_FILE,
            config.as_bytes().to_vec(),
            0o644,
        )),
        file(owlet_ca::AGENT_CERT_FILE, out, 0o644),
        file(owlet_ca::AGENT_KEY_FILE, out, 0o600),
        file(owlet_ca::CA_CERT_FILE, out, 0o644),
        file(owlet_ca::SOC_CERT_FILE, ca_dir, 0o644),
    ]
    .into_iter()
    .collect::<Result<Vec<_>, _>>()
    .map_err(io)?
    {
        let mut h = tar::Header::new_ustar();
        h.set_size(bytes.len() as u64);
        h.set_mode(mode);
        h.set_mtime((crate::db::now_us() / 1_000_000) as u64);
        h.set_cksum();
        tar.append_data(&mut h, format!("{top}/{name}"), bytes.as_slice())
            .map_err(io)?;
    }
    tar.into_inner().map_err(io)
}

/// Runs `make` (issue or renew) into a private temporary directory, packs
/// the files and removes the directory; the bundle waits for its download.
fn make_bundle(
    s: &crate::web::Inner,
    identity: &Identity,
    make: impl FnOnce(&Path, &Path) -> owlet_tls::Result<String>,
) -> Result<(String, String, String), PageError> {
    let dir = ca_dir(s).map_err(PageError::BadRequest)?;
    let config = agent_config(s, &dir, identity)?;
    // In RAM (/dev/shm) where there is one, so the agent's key never
    // reaches a disk; else beside portal.db. Mode 0700, removed when `out`
    // drops (before the page is shown).
    let temp = |dir: &Path| {
        tempfile::Builder::new()
            .prefix(".sensor-bundle-")
            .tempdir_in(dir)
    };
    let out = temp(Path::new("/dev/shm"))
        .or_else(|_| temp(&s.settings.root))
        .map_err(|e| PageError::Internal(format!("temporary directory: {e}")))?;
    let what = make(&dir, out.path()).map_err(|e| PageError::BadRequest(e.to_string()))?;
    let tar = bundle_of(out.path(), &dir, identity, &config)?;
    drop(out);
    let file_name = format!("owlet-{}-{}.tar", identity.tenant, identity.agent_id);
    let token = s.bundles.put(Bundle {
        file_name: file_name.clone(),
        tenant: identity.tenant.clone(),
        tar,
        made: Instant::now(),
    });
    Ok((token, file_name, what))
}

/// `POST /admin/sensors/{action}`: `issue`, `renew` (a new bundle),
/// `revoke`, `bundle` (the one download; a POST, as it is consumed).
pub async fn act(
    State(state): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    UrlPath(action): UrlPath<String>,
    Form(form): Form<ActionForm>,
) -> Result<Response, PageError> {
    state
        .blocking(move |s| {
            let who = ctx.who()?.name.clone();
            let audit = |tenant: &str, detail: &str| {
                s.audit_as(
                    &who,
                    Some(tenant),
                    &format!(
                        "admin.cert.{}",
                        if action == "bundle" { "download" } else { &action }
                    ),
                    detail,
                    &ctx.remote,
                );
            };
            match action.as_str() {
                "issue" | "renew" => {
                    let identity = form.identity()?;
                    let days = form.days()?;
                    let revoke_old = form.revoke_old.is_some();
                    let (token, file, what) = make_bundle(s, &identity, |dir, out| {
                        if action == "issue" {
                            let p = owlet_ca::issue(dir, &identity, out, days)?;
                            return Ok(format!("serial {}, {days} days", p.serial));
                        }
                        let r = owlet_ca::renew(dir, &identity, out, days, revoke_old)?;
                        let old: Vec<&str> = r.revoked.iter().map(|c| c.serial.as_str()).collect();
                        Ok(format!(
                            "serial {}, {days} days; revoked: [{}]",
                            r.paths.serial,
                            old.join(", ")
                        ))
                    })?;
                    let detail = format!("{identity}: {what}");
                    audit(&identity.tenant, &detail);
                    page(s, &ctx, Some((token, file)), detail)
                }
                "revoke" => {
                    let identity = form.identity()?;
                    let reason = REASONS
                        .iter()
                        .find(|r| r.0 == form.reason.trim())
                        .map_or(Reason::Unspecified, |r| r.1);
                    let serial = form.serial.trim().to_string();
                    let dir = ca_dir(s).map_err(PageError::BadRequest)?;
                    let done = owlet_ca::revoke(&dir, &identity, &Selection::Serial(serial.clone()), reason)
                        .map_err(|e| PageError::BadRequest(e.to_string()))?;
                    let detail = format!(
                        "{identity}: serial {serial} ({}); the CRL lists {}",
                        form.reason.trim(),
                        done.listed
                    );
                    audit(&identity.tenant, &detail);
                    page(s, &ctx, None, detail)
                }
                "bundle" => {
                    let b = s.bundles.take(&form.token).ok_or_else(|| {
                        PageError::BadRequest(
                            "this bundle was downloaded already or has expired: renew the certificate to get a new one"
                                .into(),
                        )
                    })?;
                    audit(&b.tenant, &b.file_name);
                    Ok((
                        [
                            (header::CONTENT_TYPE, "application/x-tar".to_string()),
                            (
                                header::CONTENT_DISPOSITION,
                                format!("attachment; filename=\"{}\"", b.file_name),
                            ),
                            (header::CACHE_CONTROL, "no-store".to_string()),
                        ],
                        b.tar,
                    )
                        .into_response())
                }
                _ => Err(PageError::NotFound),
            }
        })
        .await
}
