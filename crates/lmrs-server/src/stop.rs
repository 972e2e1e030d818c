//! Stop sequences in generated text, as OpenAI applies them: the text is cut before the first
//! one, and while streaming a piece that could be the start of one is held back.

/// Cuts generated text at the first stop sequence, also while streaming: [`StopMatcher::push`]
/// returns only text that cannot be the start of a stop sequence, holding back a possible
/// partial match until the next piece decides it.
#[derive(Debug, Clone, Default)]
pub struct StopMatcher {
    stops: Vec<String>,
    pending: String,
    stopped: bool,
}

impl StopMatcher {
    /// A matcher for `stops` (none: everything passes).
    pub fn new(stops: Vec<String>) -> Self {
        Self {
            stops,
            pending: String::new(),
            stopped: false,
        }
    }

    /// Whether a stop sequence was seen (later pieces are dropped).
    pub fn stopped(&self) -> bool {
        self.stopped
    }

    /// Feed a new piece; returns the text safe to emit now.
    pub fn push(&mut self, piece: &str) -> String {
        if self.stopped {
            return String::new();
        }
        self.pending.push_str(piece);
        if let Some(cut) = self
            .stops
            .iter()
            .filter_map(|s| self.pending.find(s.as_str()))
            .min()
        {
            self.stopped = true;
            let out = self.pending[..cut].to_string();
            self.pending.clear();
            return out;
        }
        // Hold back the longest suffix that is a prefix of some stop sequence.
        let mut keep = 0;
        for s in &self.stops {
            for (i, _) in s.char_indices().skip(1) {
                if self.pending.ends_with(&s[..i]) {
                    keep = keep.max(i);
                }
            }
        }
        let emit_to = self.pending.len() - keep;
        let out = self.pending[..emit_to].to_string();
        self.pending.drain(..emit_to);
        out
    }

    /// The held-back text once generation has ended.
    pub fn finish(&mut self) -> String {
        std::mem::take(&mut self.pending)
    }

    /// Cut a whole text at its first stop sequence: `(text, stopped)`.
    pub fn cut(text: &str, stops: &[String]) -> (String, bool) {
        let mut m = StopMatcher::new(stops.to_vec());
        let mut out = m.push(text);
        if !m.stopped() {
            out.push_str(&m.finish());
        }
        (out, m.stopped())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stop_matcher_holds_back_partial_matches() {
        let mut m = StopMatcher::new(vec!["END".into(), "\n\n".into()]);
        assert_eq!(m.push("Hello E"), "Hello ");
        assert_eq!(m.push("N"), "");
        assert_eq!(m.push("ough"), "ENough");
        assert_eq!(m.push(" then\n"), " then");
        assert_eq!(m.push("\nmore"), "");
        assert!(m.stopped());
        assert_eq!(m.push("x"), "");
        assert_eq!(
            StopMatcher::cut("a STOP b", &["STOP".into()]),
            ("a ".into(), true)
        );
        assert_eq!(
            StopMatcher::cut("a ST", &["STOP".into()]),
            ("a ST".into(), false)
        );
        assert_eq!(StopMatcher::cut("abc", &[]), ("abc".into(), false));
    }
}
