//! owlet-soc-notify: the SOC's incident notifications (issue 15 §5).
//!
//! The MSS guideline asks for automatic notification by mail, SNMP (and
//! phone), per-customer rules about what is notified, and a measured time
//! from detection to notification. This crate reads every tenant's event
//! log from the store (`owlet-soc-store`) with its own durable cursor
//! (consumer `notify`), applies the tenant's rules ([`rules`]), folds bursts
//! into one message per grouping window, holds messages through quiet hours
//! and delivers them when the quiet hours end, and sends each message
//! through its channels ([`channel`]: SMTP with STARTTLS, SNMP v2c / v3 traps
//! and informs, an HMAC-signed webhook) with retries and exponential
//! backoff. Every notification is recorded in the tenant's own
//! `notifications.db` ([`record`]) — or, in the scaled-out SOC, in the
//! tenant's PostgreSQL schema ([`ledger::postgres`]): what was sent, to
//! whom, through which channel, the events it covers, their detection
//! time, when it was sent and delivered, the attempts, and the final
//! status and error. One notifier loop ([`notifier`]) serves both; the
//! [`ledger`] seam is where events, record and cursor live.
//!
//! What it must never do: show one tenant's events to another tenant's
//! contacts (a worker holds one tenant; a channel lists the tenants it
//! serves and the config refuses a rule using another tenant's channel),
//! read a secret from anywhere but a file, or drop a matched event silently
//! (quiet hours delay, never drop; a delivery that gives up is recorded
//! `failed` with its error).
//!
//! Entry points for `owlet-soc`: [`run`] (in `serve`) and [`history`] (a CLI
//! listing); [`ledger::postgres::run`] (`owlet-soc notify`) and
//! [`ledger::postgres::history`].
#![forbid(unsafe_code)]

pub mod channel;
pub mod config;
pub mod contacts;
pub mod error;
pub mod ledger;
pub mod message;
pub mod notifier;
pub mod record;
pub mod rules;

pub use config::NotifyConfig;
pub use error::{NotifyError, Result};
pub use notifier::{CONSUMER, run, supervise};
pub use record::{DeliveryRow, HistoryQuery, HistoryRow, history, record_path, render_history};
