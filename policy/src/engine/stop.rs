//! Incremental detokenization and stop-string detection (spec §1: a segment may end at a
//! delimiter string such as "\n\n", with the token budget as the cap).
//!
//! Decoding the whole segment after every token would cost O(n²) per row, so the text grows by
//! the difference between two short decodes (the prefix/read offsets of text-generation-inference):
//! `decode(tokens[prefix..])` minus `decode(tokens[prefix..read])`. A delta that ends in U+FFFD
//! (an incomplete UTF-8 sequence split across byte-level tokens) is held back until the next
//! token completes it. A stop string may span several tokens; only the tail of the text that can
//! contain a new match is searched.

use std::sync::Arc;

/// Turns token ids into text (the tokenizer, or a test double).
pub trait TokenDecoder: Send + Sync {
    fn decode(&self, ids: &[u32]) -> String;
}

impl<F: Fn(&[u32]) -> String + Send + Sync> TokenDecoder for F {
    fn decode(&self, ids: &[u32]) -> String {
        self(ids)
    }
}

/// The stop-string state of one generated row.
#[derive(Debug, Default)]
pub struct StopState {
    text: String,
    prefix_offset: usize,
    read_offset: usize,
}

impl StopState {
    /// Text decoded so far (may lag the tokens by an incomplete UTF-8 sequence).
    pub fn text(&self) -> &str {
        &self.text
    }

    /// Feeds the generated tokens (all of them, the newest last) and reports whether any stop
    /// string now appears in the generated text.
    pub fn push(&mut self, tokens: &[u32], stops: &[String], decoder: &Arc<dyn TokenDecoder>) -> bool {
        let prefix_text = decoder.decode(&tokens[self.prefix_offset..self.read_offset]);
        let new_text = decoder.decode(&tokens[self.prefix_offset..]);
        if new_text.len() <= prefix_text.len() || new_text.ends_with('\u{FFFD}') {
            return false;
        }
        let delta = match new_text.strip_prefix(prefix_text.as_str()) {
            Some(d) => d,
            // the tokenizer changed earlier text when seeing more context: take what follows the
            // common byte length at a character boundary
            None => {
                let mut cut = prefix_text.len();
                while !new_text.is_char_boundary(cut) {
                    cut -= 1;
                }
                &new_text[cut..]
            }
        };
        let max_stop = stops.iter().map(|s| s.len()).max().unwrap_or(0);
        let mut search_from = self.text.len().saturating_sub(max_stop.saturating_sub(1));
        self.text.push_str(delta);
        self.prefix_offset = self.read_offset;
        self.read_offset = tokens.len();
        while !self.text.is_char_boundary(search_from) {
            search_from -= 1;
        }
        let tail = &self.text[search_from..];
        stops.iter().any(|s| tail.contains(s.as_str()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each id is one byte of text (ids >= 128 are bytes of multi-byte UTF-8 characters).
    fn byte_decoder() -> Arc<dyn TokenDecoder> {
        Arc::new(|ids: &[u32]| {
            let bytes: Vec<u8> = ids.iter().map(|&i| i as u8).collect();
            String::from_utf8_lossy(&bytes).into_owned()
        })
    }

    fn run(text: &str, stops: &[&str]) -> Option<usize> {
        let stops: Vec<String> = stops.iter().map(|s| s.to_string()).collect();
        let dec = byte_decoder();
        let mut st = StopState::default();
        let ids: Vec<u32> = text.bytes().map(u32::from).collect();
        (1..=ids.len()).find(|&n| st.push(&ids[..n], &stops, &dec))
    }

    #[test]
    fn stop_string_spanning_tokens_is_found_at_the_completing_token() {
        assert_eq!(run("ab\n\ncd", &["\n\n"]), Some(4));
        assert_eq!(run("abc", &["\n\n"]), None);
        assert_eq!(run("xx END yy", &["END", "zz"]), Some(6));
        // an earlier partial match does not fire
        assert_eq!(run("EN-END", &["END"]), Some(6));
    }

    #[test]
    fn multibyte_characters_are_held_until_complete() {
        // "é" is two bytes; the stop string is the character itself
        assert_eq!(run("aé", &["é"]), Some(3));
        let dec = byte_decoder();
        let mut st = StopState::default();
        let ids: Vec<u32> = "aéb".bytes().map(u32::from).collect();
        for n in 1..=ids.len() {
            st.push(&ids[..n], &[], &dec);
        }
        assert_eq!(st.text(), "aéb");
    }
}
