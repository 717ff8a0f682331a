//! owlet-soc-portal: the MSSP's web portal, run as its own process
//! (`owlet-soc portal`), so a portal failure never touches the receiver.
//!
//! Every page reads a tenant's data through one seam, [`backend`]: in the
//! embedded SOC the tenants' event logs (`owlet_soc_store::TenantReader`)
//! and the receiver's `soc.db` (sensors), read-only; in the scaled-out SOC
//! the writer's PostgreSQL, one read-only connection per request whose
//! `search_path` is the session's tenant's schema alone. In both modes it
//! owns one local database, `ROOT/portal.db` ([`db`]; scaled-out: `[paths]
//! state_dir`): users, sessions, audit log, alert workflow, login
//! attempts. It is never shared between hosts, so the scaled-out SOC runs
//! one portal process.
//!
//! What it guarantees:
//! * HTTPS only (rustls, [`server`]); every response carries a strict CSP
//!   with no inline script or style, `nosniff`, no referrer, HSTS;
//! * one route table ([`web::routes::ROUTES`]) from which the router is
//!   built, each route behind one guard ([`web::guard`]) that checks the
//!   session, the tenant against the user's scope (a foreign tenant is
//!   404), the role's permission (403) and the CSRF token of every
//!   non-GET request;
//! * TOTP secrets sealed at rest under `portal-totp.key` ([`seal`]);
//! * argon2id passwords, TOTP for MSSP roles, lockout after repeated
//!   failures; session ids random, stored hashed, renewed at login;
//! * every page is a compiled askama template with escaping on: data from
//!   sensors (paths, diffs, names) is always text, never markup;
//! * filters reach SQL only as bound parameters.
//!
//! What it must never do: show one tenant's data to a user outside that
//! tenant's scope, write to a tenant's log, to `soc.db` or to PostgreSQL, or load anything
//! from outside (the JavaScript it uses is vendored, [`web::assets`]).
#![forbid(unsafe_code)]

pub mod audit;
pub mod auth;
pub mod backend;
pub mod config;
pub mod data;
pub mod db;
pub mod escalate;
pub mod i18n;
pub mod lockout;
pub mod oidc;
pub mod pages;
pub mod roles;
pub mod seal;
pub mod server;
pub mod session;
pub mod timefmt;
pub mod users;
pub mod web;
pub mod workflow;

pub use config::{DataSettings, PortalSection, Settings};
pub use db::Db;
pub use roles::Role;
pub use server::serve;
