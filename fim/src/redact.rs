//! Redaction of diff lines. The rules live in `owlet-redact` (shared with
//! host health, which redacts process command lines with them); this module
//! re-exports them so callers keep naming `owlet_fim::redact::Redactor`.
//! What is guaranteed and what is not covered: see `owlet_redact`.

pub use owlet_redact::{FileKind, REDACTED, RedactError, Redactor, pem_private_key_lines};
