//! Splitting text into parts a channel accepts (Connect: 1,024 characters;
//! WhatsApp: 4,096): at most `limit` characters
//! each, in order, cut at the best boundary available — paragraph, line,
//! sentence, word — and never inside a grapheme cluster (an emoji with its
//! modifiers, a letter with its accents). Concatenating the parts gives back
//! the original text exactly.

use unicode_segmentation::UnicodeSegmentation;

/// Connect's limit for `text/plain` and `text/markdown` messages.
pub const CONNECT_TEXT_LIMIT: usize = 1_024;
/// WhatsApp's limit for a text message body.
pub const WHATSAPP_TEXT_LIMIT: usize = 4_096;

/// Splits `text` into parts of at most `limit` characters (Unicode scalar
/// values, as Connect counts). A single grapheme cluster longer than
/// `limit` — only pathological input has one — is cut between characters.
pub fn split_text(text: &str, limit: usize) -> Vec<String> {
    assert!(limit > 0, "limit must be positive");
    let mut parts = Vec::new();
    let mut rest = text;
    while rest.chars().count() > limit {
        let cut = cut_point(rest, limit);
        let (part, tail) = rest.split_at(cut);
        parts.push(part.to_owned());
        rest = tail;
    }
    if !rest.is_empty() {
        parts.push(rest.to_owned());
    }
    parts
}

/// Byte offset of the best place to end the first part of `text`.
fn cut_point(text: &str, limit: usize) -> usize {
    // The furthest grapheme boundary within the limit.
    let mut window = 0;
    let mut chars = 0;
    let mut boundaries = Vec::new();
    for (offset, grapheme) in text.grapheme_indices(true) {
        let n = grapheme.chars().count();
        if chars + n > limit {
            break;
        }
        chars += n;
        window = offset + grapheme.len();
        boundaries.push(window);
    }
    if window == 0 {
        // One grapheme longer than the limit: cut between its characters.
        return text
            .char_indices()
            .nth(limit)
            .map_or(text.len(), |(i, _)| i);
    }
    let head = &text[..window];
    // Prefer a boundary in the second half of the window, so parts stay
    // reasonably full; fall back to any boundary, then to the window's end.
    let half = window / 2;
    for separators in [
        &["\n\n"][..],
        &["\n"],
        &[". ", "! ", "? ", "。", "！", "？"],
        &[" ", "\t"],
    ] {
        // Only where a grapheme ends: a space followed by a combining mark
        // is one grapheme.
        let best = separators
            .iter()
            .flat_map(|sep| head.match_indices(sep).map(|(i, m)| i + m.len()))
            .filter(|&end| end > half && boundaries.binary_search(&end).is_ok())
            .max();
        if let Some(end) = best {
            return end;
        }
    }
    window
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn short_text_is_one_part() {
        assert_eq!(split_text("hello", 1024), ["hello"]);
        assert!(split_text("", 1024).is_empty());
    }

    #[test]
    fn a_1025_character_message_becomes_two_parts() {
        let text = format!("{} {}", "a".repeat(600), "b".repeat(424));
        assert_eq!(text.chars().count(), 1_025);
        let parts = split_text(&text, 1_024);
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0], format!("{} ", "a".repeat(600)));
        assert_eq!(parts[1], "b".repeat(424));
    }

    #[test]
    fn prefers_paragraphs_then_sentences_then_words() {
        let text = format!(
            "{}\n\n{}. {} {}",
            "p".repeat(30),
            "s".repeat(10),
            "w".repeat(5),
            "x".repeat(5)
        );
        let parts = split_text(&text, 40);
        assert_eq!(parts[0], format!("{}\n\n", "p".repeat(30)));
        let text = format!("{}. {} {}", "s".repeat(30), "w".repeat(5), "x".repeat(10));
        assert_eq!(split_text(&text, 40)[0], format!("{}. ", "s".repeat(30)));
    }

    #[test]
    fn never_splits_a_grapheme() {
        // Family emoji: 7 chars in one grapheme.
        let family = "👨‍👩‍👧‍👦";
        let text = family.repeat(10);
        for part in split_text(&text, 10) {
            assert_eq!(part, family, "each part holds whole families");
        }
    }

    fn graphemes(s: &str) -> Vec<&str> {
        s.graphemes(true).collect()
    }

    proptest! {
        #[test]
        fn no_loss_order_kept_limits_respected_grapheme_safe(
            text in "(\\PC{0,40}|[ \\n.!?]{0,3}|👍🏽|é|👨‍👩‍👧){0,120}",
            limit in 8usize..200,
        ) {
            let parts = split_text(&text, limit);
            prop_assert_eq!(parts.concat(), text.clone());
            let mut boundary = 0;
            let all = graphemes(&text);
            let mut starts = std::collections::HashSet::new();
            let mut offset = 0;
            for g in &all { starts.insert(offset); offset += g.len(); }
            starts.insert(text.len());
            // Only a grapheme longer than the limit may (must) be cut.
            let pathological = all.iter().any(|g| g.chars().count() > limit);
            for part in &parts {
                prop_assert!(!part.is_empty());
                prop_assert!(part.chars().count() <= limit);
                boundary += part.len();
                prop_assert!(pathological || starts.contains(&boundary), "cut inside a grapheme");
            }
        }
    }
}
