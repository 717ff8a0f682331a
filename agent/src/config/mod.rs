//! The agent's configuration file (`/etc/owlet/owlet.toml` by default).
//!
//! Guarantees: a config that loads is complete and consistent — every file it
//! names exists and is readable, private keys are not readable by others,
//! durations and sizes are in range, `agent.tenant` / `agent.id` (when given)
//! agree with the certificate's `owlet://TENANT/AGENT` identity, and
//! `agent.hw_profile` (when given) is one of [`HW_PROFILES`] or `auto`, and
//! the keys the file leaves out hold that profile's values (see
//! [`profile`]; a value in the file wins). Every problem is
//! reported at once where possible, each naming file, line, column and key
//! (see `owlet-tomlconf`). Unknown keys are errors that name the nearest valid
//! key; a malformed duration or byte size is answered with an example.
//! Relative paths are resolved against the directory of the config file.
//!
//! The SOC's name: when the SOC's certificate is at hand ([`SOC_CERT`] beside
//! `soc.ca`, signed by it), a name the agent checks ([`Config::server_name`])
//! that the certificate does not carry is an error — the agent could never
//! connect. Without that certificate the name cannot be checked here; an IP
//! address in `soc.address` without `soc.server_name` is then a warning
//! ([`Config::warnings`]), as IP SANs are the exception.
//!
//! This module only reads and checks; it never creates files or directories.

pub mod profile;
mod schema;

pub use owlet_tls::names::split_host_port;
pub use profile::HW_PROFILES;
pub use schema::*;

use std::path::{Path, PathBuf};

use owlet_tomlconf::{ConfigError, ConfigErrors, Source};

/// Default location of the agent's configuration.
pub const DEFAULT_PATH: &str = "/etc/owlet/owlet.toml";

/// The SOC's server certificate, looked for beside `soc.ca` to check the
/// SOC's name before connecting (`owlet-soc ca issue` copies it there; the
/// CA directory has it under the same name).
pub const SOC_CERT: &str = "soc.pem";

/// Loads, resolves and validates an agent configuration file: the one
/// loader of `owlet run`, `check-config`, `selftest`, `fim`, `hw-profile
/// show --config` and reloads.
pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
    owlet_tomlconf::load(path, |config: &mut Config, source| {
        config.resolve_paths(source);
        let mut errors = profile::apply(config, source, None, Path::new("/"));
        errors.extend(config.validate(source).into_iter().map(|mut e| {
            if config.profile.origin(&e.key) == Some(profile::Origin::Profile) {
                e.message.push_str(&format!(
                    " (the value comes from hardware profile `{}`: set {} in this file to override it)",
                    config.agent.hw_profile, e.key
                ));
            }
            e
        }));
        errors
    })
}

impl Config {
    fn resolve_paths(&mut self, source: &Source) {
        for p in [
            &mut self.soc.ca,
            &mut self.soc.cert,
            &mut self.soc.key,
            &mut self.agent.state_dir,
            &mut self.control.socket,
        ] {
            *p = source.resolve(p);
        }
        if let Some(dir) = &mut self.spool.dir {
            *dir = source.resolve(dir);
        }
        for ca in self.probe.checks.iter_mut().filter_map(|c| c.ca.as_mut()) {
            *ca = source.resolve(ca);
        }
    }

    /// Directory of the spool: `spool.dir`, or `STATE_DIR/spool`.
    pub fn spool_dir(&self) -> PathBuf {
        self.spool
            .dir
            .clone()
            .unwrap_or_else(|| self.agent.state_dir.join("spool"))
    }

    fn validate(&self, src: &Source) -> Vec<ConfigError> {
        let mut errors = Vec::new();
        let mut check = |ok: bool, key: &str, message: &str| {
            if !ok {
                errors.push(src.error(key, message));
            }
        };

        check(
            split_host_port(&self.soc.address).is_some(),
            "soc.address",
            "expected HOST:PORT, e.g. \"soc.example.net:4443\" or \"[2001:db8::1]:4443\"",
        );
        for (i, alternative) in self.soc.alternatives.iter().enumerate() {
            check(
                split_host_port(alternative).is_some(),
                &format!("soc.alternatives[{i}]"),
                "expected HOST:PORT, e.g. \"soc-2.example.net:4443\" (another receiver of the same SOC)",
            );
        }
        check(
            self.soc.server_name.as_deref() != Some(""),
            "soc.server_name",
            "cannot be empty: it is the name the SOC's certificate must carry",
        );
        check(
            self.batch.max_events >= 1,
            "batch.max_events",
            "must be at least 1",
        );
        check(
            self.batch.max_events <= owlet_proto::MAX_BATCH_EVENTS,
            "batch.max_events",
            &format!("must be at most {}", owlet_proto::MAX_BATCH_EVENTS),
        );
        check(
            self.batch.max_bytes.as_u64() >= 1024
                && self.batch.max_bytes.as_u64() <= (owlet_proto::MAX_MESSAGE_BYTES / 2) as u64,
            "batch.max_bytes",
            "must be between 1 KiB and 2 MiB (half the 4 MiB gRPC message limit)",
        );
        check(
            self.spool.max_bytes.as_u64() >= 4 * self.spool.segment_bytes.as_u64(),
            "spool.max_bytes",
            "must be at least 4 x spool.segment_bytes so dropping one segment frees room",
        );
        check(
            self.spool.max_batches >= 1000,
            "spool.max_batches",
            "must be at least 1000",
        );
        check(
            self.spool.segment_bytes.as_u64() >= 2 * self.batch.max_bytes.as_u64(),
            "spool.segment_bytes",
            "must be at least 2 x batch.max_bytes",
        );
        for (key, duration) in [
            ("status.interval", self.status.interval),
            ("soc.connect_timeout", self.soc.connect_timeout),
            ("batch.linger", self.batch.linger),
            ("spool.max_age", self.spool.max_age),
            ("spool.fsync_interval", self.spool.fsync_interval),
        ] {
            check(!duration.is_zero(), key, "must be more than 0s");
        }
        check(
            !self.status.undelivered_warning.is_zero()
                && self.status.undelivered_warning < self.status.undelivered_critical,
            "status.undelivered_warning",
            "must be more than 0s and less than status.undelivered_critical (defaults 2m and 5m)",
        );
        check(
            self.soc.backoff_min <= self.soc.backoff_max && !self.soc.backoff_min.is_zero(),
            "soc.backoff_min",
            "must be more than 0s and not more than soc.backoff_max",
        );
        for (key, id) in [
            ("agent.tenant", &self.agent.tenant),
            ("agent.id", &self.agent.id),
        ] {
            if let Some(id) = id
                && let Err(e) = owlet_tls::Identity::new(id, "x")
                    .and_then(|_| owlet_tls::Identity::new("x", id))
            {
                errors.push(src.error(key, e.to_string()));
            }
        }

        if let Err(e) = owlet_tls::load_certs(&self.soc.ca) {
            errors.push(src.error("soc.ca", e.to_string()));
        }
        errors.extend(self.soc_name_error(src));
        let cert_ok = match self.certificate_identity() {
            Err(problem) => {
                errors.push(src.error("soc.cert", problem));
                false
            }
            Ok(identity) => {
                errors.extend(self.identity_mismatches(&identity, src));
                true
            }
        };
        match owlet_tls::load_private_key(&self.soc.key) {
            Err(e) => errors.push(src.error("soc.key", e.to_string())),
            // Both readable: they must also belong together.
            Ok(_) if cert_ok => {
                if let Err(e @ owlet_tls::TlsError::CertKey { .. }) =
                    owlet_tls::client_config(&self.soc.ca, &self.soc.cert, &self.soc.key)
                {
                    errors.push(src.error("soc.key", e.to_string()));
                }
            }
            Ok(_) => {}
        }

        if let Some(address) = self.control.prometheus_listen
            && !address.ip().is_loopback()
        {
            errors.push(src.error(
                "control.prometheus_listen",
                format!(
                    "{address} is not a loopback address; the agent opens no port reachable from the network \
                     (use e.g. \"127.0.0.1:9465\" and let the local scraper or an SSH tunnel reach it)"
                ),
            ));
        }
        if let Err(e) = owlet_logging::check_level(&self.log.level) {
            errors.push(src.error("log.level", format!("not a log filter: {e}")));
        }
        let sections = [
            ("capture", self.capture.validate()),
            ("probe", self.probe.validate()),
            ("fim", self.fim.validate()),
            ("host", self.host.validate()),
        ];
        for (section, issues) in sections {
            for issue in issues {
                errors.push(src.error(&format!("{section}.{}", issue.path), issue.message));
            }
        }
        errors
    }

    /// Who the certificate at `soc.cert` says this agent is (its
    /// `owlet://TENANT/AGENT` SAN), or why it cannot be read.
    pub fn certificate_identity(&self) -> Result<owlet_tls::Identity, String> {
        let chain = owlet_tls::load_certs(&self.soc.cert).map_err(|e| e.to_string())?;
        let leaf = chain
            .first()
            .ok_or_else(|| format!("{}: holds no certificate", self.soc.cert.display()))?;
        owlet_tls::identity_from_cert(leaf).map_err(|e| format!("{}: {e}", self.soc.cert.display()))
    }

    /// `agent.tenant` / `agent.id` claims that contradict the certificate.
    /// The SOC goes by the certificate and refuses an agent whose claims
    /// differ, so a mismatch caught here saves a silent refusal later.
    fn identity_mismatches(&self, cert: &owlet_tls::Identity, src: &Source) -> Vec<ConfigError> {
        [
            ("agent.tenant", "tenant", &self.agent.tenant, &cert.tenant),
            ("agent.id", "agent id", &self.agent.id, &cert.agent_id),
        ]
        .into_iter()
        .filter_map(|(key, what, claim, actual)| {
            let claim = claim.as_deref().filter(|c| *c != actual.as_str())?;
            Some(src.error(
                key,
                format!(
                    "says `{claim}` but the certificate {} is for {what} `{actual}` ({}); \
                     the SOC identifies this agent by its certificate: remove tenant/id or correct them",
                    self.soc.cert.display(),
                    cert.to_uri(),
                ),
            ))
        })
        .collect()
    }

    /// Every warning about this configuration on this host (not errors: the
    /// agent runs), for `check-config` and the start of `run`.
    pub fn warnings(&self) -> Vec<String> {
        self.certificate_warning()
            .into_iter()
            .chain(self.soc_name_warning())
            .chain(self.capture.warnings())
            .collect()
    }

    /// The SOC's server certificate as this sensor holds it: [`SOC_CERT`]
    /// beside `soc.ca` (`owlet-soc ca issue` puts it there), when `soc.ca`
    /// signed it. `None` when there is none (an older enrolment, a hand-made
    /// deployment) or it belongs to another CA.
    fn soc_certificate(
        &self,
    ) -> Option<(
        PathBuf,
        owlet_tls::rustls::pki_types::CertificateDer<'static>,
    )> {
        let path = self.soc.ca.parent()?.join(SOC_CERT);
        if !path.is_file() {
            return None;
        }
        let leaf = owlet_tls::load_certs(&path).ok()?.into_iter().next()?;
        let cas = owlet_tls::load_certs(&self.soc.ca).ok()?;
        owlet_tls::names::issued_by(&leaf, &cas).then_some((path, leaf))
    }

    /// An error when the SOC's certificate this sensor holds does not carry
    /// the name the agent checks ([`Config::server_name`]): the agent would
    /// be refused with `tls_name_mismatch` on every connection. Located at
    /// `soc.server_name` when set, else at `soc.address`.
    fn soc_name_error(&self, src: &Source) -> Option<ConfigError> {
        let (path, leaf) = self.soc_certificate()?;
        let name = self.server_name();
        if name.is_empty() || owlet_tls::names::covers(&leaf, &name).unwrap_or(false) {
            return None;
        }
        let names = owlet_tls::names::names(&leaf).unwrap_or_default();
        let fix = match names.as_slice() {
            [only] if !only.starts_with('*') => format!("set soc.server_name = \"{only}\""),
            _ => "set soc.server_name to one of them".to_string(),
        };
        let key = if self.soc.server_name.is_some() {
            "soc.server_name"
        } else {
            "soc.address"
        };
        Some(src.error(
            key,
            format!(
                "the SOC's certificate {} (signed by soc.ca) is for {}, not {name}: the agent would reject it \
                 on every connection (tls_name_mismatch); {fix}, or address the SOC by a name it carries. \
                 If the SOC's certificate has changed since, replace {} with its current soc.pem",
                path.display(),
                names.join(", "),
                path.display()
            ),
        ))
    }

    /// A warning when nothing can check the SOC's name here: `soc.address`
    /// is an IP address, `soc.server_name` is unset and there is no SOC
    /// certificate beside `soc.ca` ([`Config::soc_certificate`]). Only then:
    /// a DNS name in `soc.address` is what certificates usually carry, and
    /// with `soc.server_name` set the operator chose the name.
    pub fn soc_name_warning(&self) -> Option<String> {
        if self.soc.server_name.is_some() || self.soc_certificate().is_some() {
            return None;
        }
        let (host, _) = split_host_port(&self.soc.address)?;
        let ip: std::net::IpAddr = host.parse().ok()?;
        Some(format!(
            "soc.address {} is an IP address and soc.server_name is unset: the SOC's certificate must carry IP {ip} \
             or the agent rejects it (tls_name_mismatch), and there is no SOC certificate ({SOC_CERT} beside soc.ca) \
             to check that here; copy the SOC's {SOC_CERT} beside soc.ca (`owlet-soc ca issue` does), \
             or set soc.server_name to a name the certificate carries",
            self.soc.address
        ))
    }

    /// A warning when the agent's certificate is outside its validity
    /// period. Not an error: an agent that cannot reach the SOC still
    /// monitors and spools (nothing is lost), and delivery resumes once the
    /// certificate is replaced and the agent restarted.
    pub fn certificate_warning(&self) -> Option<String> {
        let chain = owlet_tls::load_certs(&self.soc.cert).ok()?;
        let problem =
            owlet_tls::check_validity(chain.first()?, std::time::SystemTime::now()).err()?;
        Some(format!(
            "soc.cert {}: {problem}; the SOC will refuse this agent until it is replaced",
            self.soc.cert.display()
        ))
    }

    /// Name the SOC's certificate must match: `soc.server_name`, or the host
    /// part of `soc.address`.
    pub fn server_name(&self) -> String {
        self.server_name_of(&self.soc.address)
    }

    /// Name the certificate of the receiver at `address` must match:
    /// `soc.server_name`, or the host part of `address`.
    pub fn server_name_of(&self, address: &str) -> String {
        match &self.soc.server_name {
            Some(name) => name.clone(),
            None => split_host_port(address)
                .map(|(host, _)| host.to_string())
                .unwrap_or_default(),
        }
    }

    /// `soc.address`, then `soc.alternatives`: every receiver the agent may
    /// stream to, in the order it tries them.
    pub fn soc_addresses(&self) -> impl Iterator<Item = &str> {
        std::iter::once(self.soc.address.as_str())
            .chain(self.soc.alternatives.iter().map(String::as_str))
    }
}

#[cfg(test)]
mod tests;
