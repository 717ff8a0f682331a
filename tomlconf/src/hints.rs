//! Turns what serde and the value parsers say into what a field engineer can
//! act on: the nearest valid key or value for a typo, an example for a
//! duration. Pure functions over strings; they never drop the original
//! information (the list of valid names stays when no name is close).

/// The candidate closest to `name`, if it is close enough to be the likely
/// intent: an edit distance (Damerau–Levenshtein: a swapped pair of letters
/// counts once) of at most a third of the name's length, and at least 1.
/// Case is ignored. Ties go to the first candidate in schema order.
pub fn nearest<'a>(name: &str, candidates: &[&'a str]) -> Option<&'a str> {
    let name = name.to_lowercase();
    let limit = (name.chars().count() / 3).max(1);
    candidates
        .iter()
        .map(|c| (strsim::damerau_levenshtein(&name, &c.to_lowercase()), *c))
        .filter(|(distance, _)| *distance <= limit)
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, c)| c)
}

/// Message for a key the schema does not have, given the keys its table
/// accepts (empty when unknown).
pub fn unknown_key(name: &str, valid: &[&str]) -> String {
    match nearest(name, valid) {
        Some(best) => format!("unknown key `{name}`; did you mean `{best}`?"),
        None if valid.is_empty() => {
            format!("unknown key `{name}` (check its spelling and the section it is in)")
        }
        None => format!("unknown key `{name}`; expected one of {}", quoted(valid)),
    }
}

/// An example appended to serde's "expected a duration" (humantime_serde's
/// wording, which every duration in owlet's schemas uses).
pub const DURATION_EXAMPLE: &str = "a duration such as \"30s\" or \"5m\"";

/// Rewrites one serde/parser error message into the operator's terms:
/// * `unknown field `x`, expected one of `a`, `b`` (from
///   `deny_unknown_fields`) → `unknown key `x`; did you mean `a`?`;
/// * `unknown variant `x`, expected ...` → `unknown value `x`; did you mean ...`;
/// * `..., expected a duration` → `..., expected a duration such as "30s" or "5m"`.
///
/// Other messages are returned unchanged.
pub fn rewrite(message: &str) -> String {
    if let Some((name, valid)) = named_with_expected(message, "unknown field `") {
        return unknown_key(name, &valid);
    }
    if let Some((name, valid)) = named_with_expected(message, "unknown variant `") {
        return match nearest(name, &valid) {
            Some(best) => format!(
                "unknown value `{name}`; did you mean `{best}`? (expected one of {})",
                quoted(&valid)
            ),
            None => format!("unknown value `{name}`; expected one of {}", quoted(&valid)),
        };
    }
    if let Some(head) = message.strip_suffix("expected a duration") {
        return format!("{head}expected {DURATION_EXAMPLE}");
    }
    message.to_string()
}

/// Splits serde's `PREFIXname`, expected `a`, `b` or `c`` into the name and
/// the backquoted names after "expected".
fn named_with_expected<'m>(message: &'m str, prefix: &str) -> Option<(&'m str, Vec<&'m str>)> {
    let rest = message.strip_prefix(prefix)?;
    let (name, rest) = rest.split_once('`')?;
    let (_, expected) = rest.split_once("expected")?;
    // Backquoted names sit at the odd positions of a split on '`'.
    let valid = expected.split('`').skip(1).step_by(2).collect();
    Some((name, valid))
}

fn quoted(names: &[&str]) -> String {
    names
        .iter()
        .map(|n| format!("`{n}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_finds_typos_and_refuses_strangers() {
        let keys = ["interval", "timeout", "id", "type", "target"];
        assert_eq!(nearest("interva", &keys), Some("interval"));
        assert_eq!(nearest("intreval", &keys), Some("interval"));
        assert_eq!(nearest("Timeout", &keys), Some("timeout"));
        assert_eq!(nearest("ip", &keys), Some("id"));
        assert_eq!(nearest("colour", &keys), None);
        assert_eq!(nearest("x", &[]), None);
    }

    #[test]
    fn unknown_key_suggests_or_lists() {
        assert_eq!(
            unknown_key("interva", &["interval"]),
            "unknown key `interva`; did you mean `interval`?"
        );
        assert_eq!(
            unknown_key("colour", &["tenant", "id"]),
            "unknown key `colour`; expected one of `tenant`, `id`"
        );
        assert!(unknown_key("colour", &[]).contains("check its spelling"));
    }

    #[test]
    fn serde_messages_are_rewritten() {
        assert_eq!(
            rewrite("unknown field `intervl`, expected one of `id`, `type`, `interval`"),
            "unknown key `intervl`; did you mean `interval`?"
        );
        assert_eq!(
            rewrite("unknown field `x`, expected `id` or `type`"),
            "unknown key `x`; expected one of `id`, `type`"
        );
        assert_eq!(
            rewrite("unknown variant `htp`, expected one of `tcp`, `http`"),
            "unknown value `htp`; did you mean `http`? (expected one of `tcp`, `http`)"
        );
        assert_eq!(
            rewrite("invalid type: integer `5`, expected a duration"),
            "invalid type: integer `5`, expected a duration such as \"30s\" or \"5m\""
        );
        assert_eq!(rewrite("missing field `id`"), "missing field `id`");
    }
}
