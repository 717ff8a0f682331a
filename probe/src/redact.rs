//! The one way this crate writes a `Debug` that hides secrets.
//!
//! [`redacted_debug!`] generates the `Debug` impl of a struct from two field
//! lists: fields shown as they are, and fields shown through [`Redact`]
//! (header values, request bodies: only names and lengths). It destructures
//! the struct exhaustively, so adding a field without listing it is a
//! compile error: nothing can slip into `Debug` (or out of the reload
//! fingerprint, which hashes `CheckConfig`'s `Debug`) unnoticed.
//!
//! Secrets proper (SNMP community, USM keys) are [`crate::Secret`], whose
//! own `Debug` shows nothing of them; they go in the plain list.

use std::collections::BTreeMap;
use std::fmt;

/// A value that has a redacted `Debug` form.
pub(crate) trait Redact {
    fn fmt_redacted(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result;
}

/// Shows a value through its [`Redact`] form.
pub(crate) struct Shown<'a, T: ?Sized>(pub &'a T);

impl<T: Redact + ?Sized> fmt::Debug for Shown<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt_redacted(f)
    }
}

fn len(f: &mut fmt::Formatter<'_>, n: usize) -> fmt::Result {
    write!(f, "<redacted {n} bytes>")
}

impl Redact for str {
    fn fmt_redacted(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        len(f, self.len())
    }
}

impl Redact for String {
    fn fmt_redacted(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        len(f, self.len())
    }
}

impl Redact for bytes::Bytes {
    fn fmt_redacted(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        len(f, self.len())
    }
}

impl<T: Redact> Redact for Option<T> {
    fn fmt_redacted(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            None => f.write_str("None"),
            Some(v) => f.debug_tuple("Some").field(&Shown(v)).finish(),
        }
    }
}

/// Configured headers: names shown, values redacted.
impl Redact for BTreeMap<String, String> {
    fn fmt_redacted(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.iter().map(|(k, v)| (k, Shown(v))))
            .finish()
    }
}

/// Built headers: names shown, values redacted.
impl Redact for Vec<(http::HeaderName, http::HeaderValue)> {
    fn fmt_redacted(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.iter().map(|(k, v)| (k, HeaderLen(v.len()))))
            .finish()
    }
}

struct HeaderLen(usize);

impl fmt::Debug for HeaderLen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        len(f, self.0)
    }
}

/// `"Name: value"` lines (the CLI's `--header`): the name shown, the rest
/// redacted; a line without a colon is redacted whole.
impl Redact for Vec<String> {
    fn fmt_redacted(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.iter().map(|line| HeaderLine(line)))
            .finish()
    }
}

struct HeaderLine<'a>(&'a str);

impl fmt::Debug for HeaderLine<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0.split_once(':') {
            Some((name, value)) => {
                write!(f, "{:?}: ", name.trim())?;
                len(f, value.trim().len())
            }
            None => len(f, self.0.len()),
        }
    }
}

/// `redacted_debug!(Type { plain, fields } redact { secret, fields });`
macro_rules! redacted_debug {
    ($ty:ident { $($field:ident),* $(,)? } redact { $($secret:ident),* $(,)? }) => {
        impl ::std::fmt::Debug for $ty {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                // Exhaustive: an unlisted field is a compile error.
                let $ty { $($field,)* $($secret,)* } = self;
                f.debug_struct(stringify!($ty))
                    $(.field(stringify!($field), $field))*
                    $(.field(stringify!($secret), &$crate::redact::Shown($secret)))*
                    .finish()
            }
        }
    };
}
pub(crate) use redacted_debug;

#[cfg(test)]
mod tests {
    use super::*;

    struct Req {
        url: String,
        headers: BTreeMap<String, String>,
        body: Option<String>,
        lines: Vec<String>,
    }
    redacted_debug!(Req { url } redact { headers, body, lines });

    #[test]
    fn redacted_fields_show_names_and_lengths_only() {
        let r = Req {
            url: "http://h/".into(),
            headers: [("Authorization".to_string(), "Bearer tok".to_string())].into(),
            body: Some("pw=hunter2".into()),
            lines: vec!["X-Key: k-secret".into(), "no-colon-secret".into()],
        };
        let d = format!("{r:?}");
        for secret in ["Bearer tok", "hunter2", "k-secret", "no-colon-secret"] {
            assert!(!d.contains(secret), "{secret} leaked: {d}");
        }
        for shown in ["http://h/", "Authorization", "X-Key", "<redacted 10 bytes>"] {
            assert!(d.contains(shown), "{shown} missing: {d}");
        }
    }
}
