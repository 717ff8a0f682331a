//! Shared by the corpus and property tests: what counts as a leak.

/// The part of `secret` that survived in `out`, if any: any 8-character
/// piece of it, or all of a shorter secret.
pub fn leaked<'a>(out: &str, secret: &'a str) -> Option<&'a str> {
    let chars: Vec<(usize, char)> = secret.char_indices().collect();
    if chars.len() < 8 {
        return out.contains(secret).then_some(secret);
    }
    (0..=chars.len() - 8).find_map(|i| {
        let start = chars[i].0;
        let end = chars.get(i + 8).map_or(secret.len(), |c| c.0);
        let piece = &secret[start..end];
        out.contains(piece).then_some(piece)
    })
}
