//! `[portal.oidc]` of `soc.toml`: which identity provider the portal
//! trusts for logins, and how far.
//!
//! Checks here are the ones that need no file or network (URLs, names);
//! the SOC's loader adds the file checks ([`OidcSection::check_files`]) and
//! locates every problem as `FILE:LINE:COL: portal.oidc.KEY`.

use std::path::{Path, PathBuf};

use reqwest::Url;
use serde::Deserialize;

/// The path the portal answers the IdP's redirect on.
pub const CALLBACK_PATH: &str = "/login/oidc/callback";

/// `[portal.oidc]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OidcSection {
    /// The issuer (`https://…`), exactly as the IdP's ID tokens name it;
    /// its discovery document is `{issuer}/.well-known/openid-configuration`.
    pub issuer: String,
    /// The portal's client id at the IdP.
    pub client_id: String,
    /// A file (mode 0600) holding the client secret.
    pub client_secret_file: PathBuf,
    /// The portal's callback as the browser reaches it, registered at the
    /// IdP: `https://PORTAL/login/oidc/callback`.
    pub redirect_url: String,
    /// The ID-token claim whose value is the portal user's name.
    #[serde(default = "default_claim")]
    pub claim: String,
    /// PEM roots for the IdP's certificate (a private IdP); default: the
    /// system's trust roots.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Let an IdP login whose ID token says `amr` has `mfa` or `otp` stand
    /// in for the portal's TOTP step of MSSP roles.
    #[serde(default)]
    pub trust_idp_mfa: bool,
    /// The name on the login page's button; default: the issuer's host.
    #[serde(default)]
    pub display_name: Option<String>,
}

fn default_claim() -> String {
    "email".to_string()
}

impl OidcSection {
    /// Problems with the values, as `(key below portal, message)`.
    pub fn problems(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        match Url::parse(&self.issuer) {
            Ok(url) if url.scheme() != "https" => out.push((
                "oidc.issuer",
                format!("{:?}: the issuer must be an https:// URL", self.issuer),
            )),
            Ok(url) if url.query().is_some() || url.fragment().is_some() => out.push((
                "oidc.issuer",
                format!("{:?}: an issuer has no query or fragment", self.issuer),
            )),
            Ok(_) => {}
            Err(e) => out.push((
                "oidc.issuer",
                format!(
                    "{:?}: not a URL ({e}); e.g. \"https://idp.example.net/realms/soc\"",
                    self.issuer
                ),
            )),
        }
        match Url::parse(&self.redirect_url) {
            Ok(url) if url.scheme() == "https" && url.path() == CALLBACK_PATH => {}
            _ => out.push((
                "oidc.redirect_url",
                format!(
                    "{:?}: must be the portal's https://HOST{CALLBACK_PATH} as the browser reaches it",
                    self.redirect_url
                ),
            )),
        }
        if self.client_id.trim().is_empty() {
            out.push(("oidc.client_id", "must not be empty".to_string()));
        }
        if self.claim.trim().is_empty() {
            out.push((
                "oidc.claim",
                "must name an ID-token claim, e.g. \"email\" or \"preferred_username\"".to_string(),
            ));
        }
        out
    }

    /// Problems with the files (`client_secret_file`, `ca_file`), as
    /// `(key below portal, message)`.
    pub fn check_files(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        if let Err(e) = read_client_secret(&self.client_secret_file) {
            out.push(("oidc.client_secret_file", e));
        }
        if let Some(ca) = &self.ca_file
            && let Err(e) = owlet_tls::load_certs(ca)
        {
            out.push(("oidc.ca_file", e.to_string()));
        }
        out
    }

    /// The login button's name.
    pub fn display_name(&self) -> String {
        self.display_name.clone().unwrap_or_else(|| {
            Url::parse(&self.issuer)
                .ok()
                .and_then(|u| u.host_str().map(str::to_string))
                .unwrap_or_else(|| self.issuer.clone())
        })
    }

    /// The paths a loader resolves relative to the configuration file.
    pub fn paths_mut(&mut self) -> impl Iterator<Item = &mut PathBuf> {
        std::iter::once(&mut self.client_secret_file).chain(self.ca_file.as_mut())
    }
}

/// The client secret in `path`: one line, in a file only its owner may
/// read or write (the same 0600 rule as the SOC's private keys).
pub fn read_client_secret(path: &Path) -> Result<String, String> {
    use std::os::unix::fs::PermissionsExt;
    let named = |e: std::io::Error| format!("client_secret_file {}: {e}", path.display());
    let mode = std::fs::metadata(path).map_err(named)?.permissions().mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(format!(
            "client_secret_file {} has mode {mode:04o}: a secret must not be open to others; run: chmod 600 {}",
            path.display(),
            path.display()
        ));
    }
    let text = std::fs::read_to_string(path).map_err(named)?;
    let secret = text.trim();
    if secret.is_empty() || secret.contains(['\n', '\r']) {
        return Err(format!(
            "client_secret_file {}: expected the client secret on one line",
            path.display()
        ));
    }
    Ok(secret.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn section() -> OidcSection {
        OidcSection {
            issuer: "https://idp.example.net/realms/soc".into(),
            client_id: "owlet-portal".into(),
            client_secret_file: "/nonexistent".into(),
            redirect_url: format!("https://soc.example.net:8443{CALLBACK_PATH}"),
            claim: default_claim(),
            ca_file: None,
            trust_idp_mfa: false,
            display_name: None,
        }
    }

    #[test]
    fn a_good_section_has_no_problems_and_names_its_host() {
        assert!(section().problems().is_empty());
        assert_eq!(section().display_name(), "idp.example.net");
    }

    #[test]
    fn http_issuers_and_foreign_callbacks_are_refused() {
        let mut s = section();
        s.issuer = "http://idp.example.net".into();
        s.redirect_url = "https://soc.example.net/elsewhere".into();
        s.client_id = " ".into();
        let keys: Vec<_> = s.problems().into_iter().map(|(k, _)| k).collect();
        assert_eq!(keys, ["oidc.issuer", "oidc.redirect_url", "oidc.client_id"]);
    }

    #[test]
    fn a_secret_others_may_read_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret");
        std::fs::write(&path, "s3cret\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = read_client_secret(&path).unwrap_err();
        assert!(e.contains("chmod 600"), "{e}");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(read_client_secret(&path).unwrap(), "s3cret");
    }
}
