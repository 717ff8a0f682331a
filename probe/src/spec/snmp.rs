//! The SNMP builder: address, version and credentials (v2c community, v3
//! USM user), the query (GET, walk or preset), retries.

use super::{HostPort, parse_host_port};
use crate::config::{CheckConfig, FieldIssue, Secret};
use crate::snmp::{AuthProto, Oid, Preset, PrivProto, UsmUser};

/// SNMP version and credentials.
#[derive(Debug, Clone)]
pub enum SnmpVersion {
    V2c { community: Secret },
    V3(UsmUser),
}

/// What an SNMP check asks for.
#[derive(Debug, Clone)]
pub enum SnmpQuery {
    Get(Vec<Oid>),
    Walk(Oid),
    Preset(Preset),
}

#[derive(Debug, Clone)]
pub struct SnmpSpec {
    pub addr: HostPort,
    pub version: SnmpVersion,
    pub query: SnmpQuery,
    pub retries: u32,
}

pub(super) fn build_snmp(c: &CheckConfig, errs: &mut Vec<FieldIssue>) -> Option<SnmpSpec> {
    let addr = parse_host_port(&c.target, Some(161))
        .map_err(|e| errs.push(FieldIssue::new("target", e.to_string())))
        .ok();
    let version = match c.version.as_deref().unwrap_or("2c") {
        "2c" | "v2c" | "2" => {
            for (set, key) in [
                (c.user.is_some(), "user"),
                (c.auth_proto.is_some(), "auth_proto"),
                (c.auth_key.is_some(), "auth_key"),
                (c.priv_proto.is_some(), "priv_proto"),
                (c.priv_key.is_some(), "priv_key"),
            ] {
                if set {
                    errs.push(FieldIssue::new(
                        key,
                        format!("`{key}` is for SNMPv3; set version = \"3\" or remove it"),
                    ));
                }
            }
            match &c.community {
                Some(cm) if !cm.expose().is_empty() => Some(SnmpVersion::V2c {
                    community: cm.clone(),
                }),
                _ => {
                    errs.push(FieldIssue::new(
                        "community",
                        "SNMP v2c needs `community` (the device's read community)",
                    ));
                    None
                }
            }
        }
        "3" | "v3" => {
            if c.community.is_some() {
                errs.push(FieldIssue::new(
                    "community",
                    "`community` is for v2c; SNMPv3 uses `user` and keys",
                ));
            }
            let user = match &c.user {
                Some(u) if !u.is_empty() && u.len() <= 32 => Some(u.clone()),
                _ => {
                    errs.push(FieldIssue::new(
                        "user",
                        "SNMPv3 needs `user` (1-32 characters, the USM user name)",
                    ));
                    None
                }
            };
            let auth = match c.auth_proto.as_deref() {
                None => {
                    errs.push(FieldIssue::new("auth_proto", "SNMPv3 needs `auth_proto` (\"sha256\" recommended; also sha, sha224, sha384, sha512, md5); noAuthNoPriv is not supported"));
                    None
                }
                Some(p) => match AuthProto::parse(p) {
                    Ok(a) => Some(a),
                    Err(e) => {
                        errs.push(FieldIssue::new("auth_proto", e.to_string()));
                        None
                    }
                },
            };
            let auth_key = match &c.auth_key {
                Some(k) if k.expose().len() >= 8 => Some(k.clone()),
                Some(_) => {
                    errs.push(FieldIssue::new(
                        "auth_key",
                        "must be at least 8 characters (RFC 3414)",
                    ));
                    None
                }
                None => {
                    errs.push(FieldIssue::new(
                        "auth_key",
                        "SNMPv3 needs `auth_key` (the user's authentication passphrase)",
                    ));
                    None
                }
            };
            let privacy = match (&c.priv_proto, &c.priv_key) {
                (None, None) => None,
                (Some(p), Some(k)) => {
                    if k.expose().len() < 8 {
                        errs.push(FieldIssue::new(
                            "priv_key",
                            "must be at least 8 characters (RFC 3414)",
                        ));
                    }
                    match PrivProto::parse(p) {
                        Ok(pp) => Some((pp, k.clone())),
                        Err(e) => {
                            errs.push(FieldIssue::new("priv_proto", e.to_string()));
                            None
                        }
                    }
                }
                (Some(_), None) => {
                    errs.push(FieldIssue::new(
                        "priv_key",
                        "`priv_proto` is set but `priv_key` is missing",
                    ));
                    None
                }
                (None, Some(_)) => {
                    errs.push(FieldIssue::new(
                        "priv_proto",
                        "`priv_key` is set but `priv_proto` is missing (use \"aes\")",
                    ));
                    None
                }
            };
            match (user, auth, auth_key) {
                (Some(u), Some(a), Some(k)) => {
                    Some(SnmpVersion::V3(UsmUser::new(u, a, k, privacy)))
                }
                _ => None,
            }
        }
        other => {
            errs.push(FieldIssue::new(
                "version",
                format!("\"{other}\" is not a supported SNMP version; use \"2c\" or \"3\""),
            ));
            None
        }
    };
    let set = [c.oids.is_some(), c.walk.is_some(), c.preset.is_some()]
        .iter()
        .filter(|x| **x)
        .count();
    if set != 1 {
        errs.push(FieldIssue::new(
            "oids",
            "set exactly one of `oids` (GET), `walk` (subtree) or `preset` (uptime, interfaces, cpu, memory)",
        ));
    }
    let query = if let Some(oids) = &c.oids {
        if oids.is_empty() || oids.len() > 64 {
            errs.push(FieldIssue::new("oids", "list 1 to 64 OIDs"));
        }
        let mut parsed = Vec::new();
        for o in oids {
            match Oid::parse(o) {
                Ok(oid) => parsed.push(oid),
                Err(e) => errs.push(FieldIssue::new("oids", e.to_string())),
            }
        }
        Some(SnmpQuery::Get(parsed))
    } else if let Some(w) = &c.walk {
        match Oid::parse(w) {
            Ok(oid) => Some(SnmpQuery::Walk(oid)),
            Err(e) => {
                errs.push(FieldIssue::new("walk", e.to_string()));
                None
            }
        }
    } else if let Some(p) = &c.preset {
        match Preset::parse(p) {
            Ok(p) => Some(SnmpQuery::Preset(p)),
            Err(e) => {
                errs.push(FieldIssue::new("preset", e.to_string()));
                None
            }
        }
    } else {
        None
    };
    let retries = c.retries.unwrap_or(1);
    if retries > 5 {
        errs.push(FieldIssue::new("retries", "must be at most 5"));
    }
    Some(SnmpSpec {
        addr: addr?,
        version: version?,
        query: query?,
        retries,
    })
}
