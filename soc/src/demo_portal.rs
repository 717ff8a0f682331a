//! The demo's portal: `owlet-soc portal` in the demo's process, over the
//! demo's SOC store, with two demo logins (an MSSP analyst and a customer
//! viewer of tenant `demo`), so the demo ends in a page worth looking at.
//!
//! Guarantees: it listens on loopback only (8443 when free, else any free
//! port), with the demo CA's SOC certificate; the logins are created fresh
//! in the demo's directory and printed once, with what a newcomer needs to
//! sign in (the one-time password, and for the analyst the TOTP secret and
//! how to get a code without a phone).

use std::net::SocketAddr;

use owlet_soc_portal::i18n::Lang;
use owlet_soc_portal::users::{self, Credentials, NewUser};
use owlet_soc_portal::{Db, Role, server::Portal};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::config::SocConfig;

/// The portal port the demo tries first.
const PREFERRED: &str = "127.0.0.1:8443";

/// The running demo portal.
pub struct DemoPortal {
    pub addr: SocketAddr,
    pub logins: Vec<Credentials>,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl DemoPortal {
    /// Creates the demo logins and starts the portal.
    pub async fn start(config: &SocConfig, tenant: &str) -> anyhow::Result<Self> {
        let mut settings = config.portal_settings()?;
        std::fs::create_dir_all(&settings.root)?;
        let logins = {
            let db = Db::open(&settings.portal_db())?;
            let conn = db.lock();
            [
                ("demo-analyst", Role::MsspAnalyst),
                ("demo-customer", Role::CustomerViewer),
            ]
            .into_iter()
            .map(|(name, role)| {
                users::add(
                    &conn,
                    &NewUser {
                        name: name.into(),
                        role,
                        tenants: vec![tenant.into()],
                        lang: Lang::En,
                        time_zone: "UTC".into(),
                        totp: false,
                    },
                )
            })
            .collect::<Result<Vec<_>, _>>()?
        };
        settings.listen = PREFERRED.parse()?;
        let portal = match Portal::bind(settings.clone()).await {
            Ok(p) => p,
            Err(_) => {
                settings.listen = "127.0.0.1:0".parse()?;
                Portal::bind(settings).await?
            }
        };
        let addr = portal.local_addr()?;
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(portal.run(async {
            let _ = stopped.await;
        }));
        Ok(Self {
            addr,
            logins,
            stop: Some(stop),
            task,
        })
    }

    /// What to print: the URL, the logins, how to sign in.
    pub fn lines(&self, ca: &std::path::Path) -> Vec<String> {
        let mut lines = vec![format!(
            "portal: https://localhost:{}/ (the browser will not know the demo's CA: accept it, or trust {})",
            self.addr.port(),
            ca.display()
        )];
        for c in &self.logins {
            lines.push(format!(
                "  login {:<14} one-time password {} (you choose a new one at first login)",
                c.name, c.password
            ));
            if c.totp_required {
                let secret = totp_secret(&c.otpauth_uri).unwrap_or("?");
                lines.push(format!(
                    "  {:<20} second factor: add {} to an authenticator app, or: oathtool --totp -b {secret}",
                    "", c.otpauth_uri
                ));
            }
        }
        lines
    }

    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = (&mut self.task).await;
    }
}

/// The base32 secret of an `otpauth://` URI.
fn totp_secret(uri: &str) -> Option<&str> {
    let query = uri.split_once('?')?.1;
    query
        .split('&')
        .find_map(|pair| pair.strip_prefix("secret="))
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_secret_is_read_from_the_uri() {
        assert_eq!(
            super::totp_secret("otpauth://totp/owlet:demo?secret=ABC234&issuer=owlet"),
            Some("ABC234")
        );
        assert_eq!(super::totp_secret("otpauth://totp/x"), None);
    }
}
