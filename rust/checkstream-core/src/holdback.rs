//! Per-stream holdback buffer: releases only the prefix of a streamed answer that is final.
//!
//! The released prefix ends at the smallest of these limits:
//! - the start of the last `holdback` pushes (one push is one token), so classifiers running on
//!   a window always see text before the client does;
//! - the start of the matcher's `pending` suffix (text that could still become a phrase match,
//!   including a whole-word match waiting for its boundary);
//! - the start of a match reported since the caller last called [`HoldbackBuffer::release`]
//!   (the caller decides to redact or not, then calls `release`);
//! - an external hold set with [`HoldbackBuffer::hold_from`] (e.g. a partial PII match found
//!   by a regex outside);
//! - and never inside a redacted span: a redaction goes out whole, as its replacement.
//!
//! All offsets are absolute char (code point) offsets into the stream's original text. Text is
//! held as `String`, so half a code point can never be released.

use std::collections::VecDeque;
use std::sync::Arc;

use crate::matcher::{Match, MatchStream, PhraseMatcher};
use crate::CoreError;

/// Refuse a holdback larger than this many tokens.
pub const MAX_HOLDBACK: usize = 1 << 20;

#[derive(Debug, Clone, PartialEq, Eq)]
struct Redaction {
    start: usize,
    end: usize,
    replacement: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Open,
    /// `finish` was called: no more pushes, releases still allowed.
    Finished,
    Stopped,
}

#[derive(Debug, Clone)]
pub struct HoldbackBuffer {
    holdback: usize,
    stream: Option<MatchStream>,
    /// Original text from `released` to `position`.
    held: String,
    released: usize,
    position: usize,
    /// Absolute end offsets of the last `holdback + 1` pushes.
    push_ends: VecDeque<usize>,
    match_hold: Option<usize>,
    external_hold: Option<usize>,
    /// Sorted, disjoint, all at or after `released`.
    redactions: Vec<Redaction>,
    phase: Phase,
}

impl HoldbackBuffer {
    pub fn new(holdback: usize, matcher: Option<Arc<PhraseMatcher>>) -> Result<Self, CoreError> {
        if holdback > MAX_HOLDBACK {
            return Err(CoreError::InvalidArgument(format!(
                "holdback {holdback} is more than the limit of {MAX_HOLDBACK} tokens"
            )));
        }
        Ok(Self {
            holdback,
            stream: matcher.map(MatchStream::new),
            held: String::new(),
            released: 0,
            position: 0,
            push_ends: VecDeque::with_capacity(holdback + 1),
            match_hold: None,
            external_hold: None,
            redactions: Vec::new(),
            phase: Phase::Open,
        })
    }

    fn check_not_stopped(&self, what: &str) -> Result<(), CoreError> {
        if self.phase == Phase::Stopped {
            Err(CoreError::InvalidState(format!(
                "{what} after stop(): the stream was stopped"
            )))
        } else {
            Ok(())
        }
    }

    /// Appends one token. Returns the text now safe to release and the new phrase matches.
    pub fn push(&mut self, text: &str) -> Result<(String, Vec<Match>), CoreError> {
        self.check_not_stopped("push")?;
        if self.phase == Phase::Finished {
            return Err(CoreError::InvalidState(
                "push after finish(): the stream has ended".into(),
            ));
        }
        let matches = match &mut self.stream {
            Some(s) => s.feed(text)?,
            None => Vec::new(),
        };
        self.held.push_str(text);
        self.position += if text.is_ascii() {
            text.len()
        } else {
            text.chars().count()
        };
        if self.push_ends.len() > self.holdback {
            self.push_ends.pop_front();
        }
        self.push_ends.push_back(self.position);
        self.note_matches(&matches);
        let released = self.release_safe();
        Ok((released, matches))
    }

    fn note_matches(&mut self, matches: &[Match]) {
        if let Some(first) = matches.iter().map(|m| m.start).min() {
            self.match_hold = Some(self.match_hold.map_or(first, |h| h.min(first)));
        }
    }

    /// Replaces original chars `[start, end)` with `replacement` when they are released.
    /// Overlapping redactions merge into one span that keeps the earliest one's replacement.
    pub fn redact(&mut self, start: usize, end: usize, replacement: &str) -> Result<(), CoreError> {
        self.check_not_stopped("redact")?;
        if start >= end || start < self.released || end > self.position {
            return Err(CoreError::InvalidArgument(format!(
                "redact({start}, {end}): the span must be non-empty and inside the held text \
                 [{}, {})",
                self.released, self.position
            )));
        }
        let mut new = Redaction {
            start,
            end,
            replacement: replacement.to_owned(),
        };
        // Keep the list sorted and disjoint: absorb every span that overlaps the new one.
        let mut kept = Vec::with_capacity(self.redactions.len() + 1);
        for r in self.redactions.drain(..) {
            if r.end <= new.start || r.start >= new.end {
                kept.push(r);
            } else {
                if r.start <= new.start {
                    new.replacement = r.replacement;
                }
                new.start = new.start.min(r.start);
                new.end = new.end.max(r.end);
            }
        }
        let at = kept.partition_point(|r| r.start < new.start);
        kept.insert(at, new);
        self.redactions = kept;
        Ok(())
    }

    /// Holds everything at or after `position` (absolute) until cleared with `None`.
    pub fn hold_from(&mut self, position: Option<usize>) {
        self.external_hold = position;
    }

    /// The caller has decided on the reported matches: lifts their hold and releases what is safe.
    pub fn release(&mut self) -> Result<String, CoreError> {
        self.check_not_stopped("release")?;
        self.match_hold = None;
        Ok(self.release_safe())
    }

    /// End of stream: decides the matches still waiting for a word boundary. Releases nothing.
    pub fn finish(&mut self) -> Result<Vec<Match>, CoreError> {
        self.check_not_stopped("finish")?;
        if self.phase == Phase::Finished {
            return Ok(Vec::new());
        }
        let matches = match &mut self.stream {
            Some(s) => s.finish()?,
            None => Vec::new(),
        };
        self.phase = Phase::Finished;
        self.note_matches(&matches);
        Ok(matches)
    }

    /// End of stream: releases everything left, redactions applied, ignoring every hold.
    pub fn flush(&mut self) -> Result<String, CoreError> {
        self.check_not_stopped("flush")?;
        self.phase = Phase::Finished;
        self.match_hold = None;
        Ok(self.release_to(self.position))
    }

    /// Discards everything held; later pushes, releases and flushes are errors.
    pub fn stop(&mut self) {
        self.phase = Phase::Stopped;
        self.held = String::new();
        self.redactions.clear();
        self.push_ends.clear();
    }

    pub fn released_chars(&self) -> usize {
        self.released
    }

    pub fn held_text(&self) -> &str {
        &self.held
    }

    /// Chars pushed so far.
    pub fn position(&self) -> usize {
        self.position
    }

    pub fn is_stopped(&self) -> bool {
        self.phase == Phase::Stopped
    }

    pub fn holdback(&self) -> usize {
        self.holdback
    }

    /// The offset up to which text could be released now.
    pub fn safe_limit(&self) -> usize {
        let mut limit = if self.holdback == 0 {
            self.position
        } else if self.push_ends.len() > self.holdback {
            self.push_ends[0]
        } else {
            self.released
        };
        if let Some(s) = &self.stream {
            if !s.is_finished() {
                limit = limit.min(s.position() - s.pending());
            }
        }
        for h in [self.match_hold, self.external_hold].into_iter().flatten() {
            limit = limit.min(h);
        }
        let mut limit = limit.max(self.released);
        for r in &self.redactions {
            if r.start < limit && limit < r.end {
                limit = r.start;
                break;
            }
        }
        limit
    }

    fn release_safe(&mut self) -> String {
        let limit = self.safe_limit();
        self.release_to(limit)
    }

    /// Releases original chars `[released, limit)` with the redactions inside applied.
    fn release_to(&mut self, limit: usize) -> String {
        if limit <= self.released {
            return String::new();
        }
        let count = limit - self.released;
        let cut = byte_offset(&self.held, count);
        let mut out = String::with_capacity(cut);
        let base = self.released;
        let mut from = 0usize; // char offset within held
        let mut from_byte = 0usize;
        let mut done = 0;
        for r in self.redactions.iter().take_while(|r| r.start < limit) {
            let rs = r.start - base;
            let re = (r.end - base).min(count);
            let rs_byte = from_byte + byte_offset(&self.held[from_byte..], rs - from);
            let re_byte = rs_byte + byte_offset(&self.held[rs_byte..], re - rs);
            out.push_str(&self.held[from_byte..rs_byte]);
            out.push_str(&r.replacement);
            from = re;
            from_byte = re_byte;
            done += 1;
        }
        out.push_str(&self.held[from_byte..cut]);
        self.redactions.drain(..done);
        self.held.drain(..cut);
        self.released = limit;
        out
    }
}

/// Byte offset of char `n` in `s` (or `s.len()`).
fn byte_offset(s: &str, n: usize) -> usize {
    if s.len() <= n || s.is_char_boundary(n) && s.as_bytes()[..n].is_ascii() {
        return n.min(s.len());
    }
    s.char_indices().nth(n).map_or(s.len(), |(i, _)| i)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::matcher::WholeWord;

    fn matcher(phrases: &[&str]) -> Arc<PhraseMatcher> {
        Arc::new(PhraseMatcher::new(phrases, WholeWord::All(true), false).unwrap())
    }

    #[test]
    fn holds_the_last_tokens() {
        let mut h = HoldbackBuffer::new(2, None).unwrap();
        assert_eq!(h.push("a").unwrap().0, "");
        assert_eq!(h.push("b").unwrap().0, "");
        assert_eq!(h.push("c").unwrap().0, "a");
        assert_eq!(h.push("dé").unwrap().0, "b");
        assert_eq!(h.held_text(), "cdé");
        assert_eq!(h.flush().unwrap(), "cdé");
        assert_eq!(h.released_chars(), 5);
    }

    #[test]
    fn holds_a_possible_match_then_redacts_across_pushes() {
        let mut h = HoldbackBuffer::new(0, Some(matcher(&["kill him"]))).unwrap();
        assert_eq!(h.push("I will ").unwrap().0, "I will ");
        assert_eq!(h.push("ki").unwrap().0, "");
        assert_eq!(h.push("ll h").unwrap().0, "");
        let (out, m) = h.push("im").unwrap();
        assert_eq!((out.as_str(), m.len()), ("", 0));
        let (out, m) = h.push(" now").unwrap();
        assert_eq!(out, "");
        assert_eq!(
            m.iter().map(Match::as_tuple).collect::<Vec<_>>(),
            vec![(0, 7, 15)]
        );
        h.redact(7, 15, "[x]").unwrap();
        assert_eq!(h.release().unwrap(), "[x] now");
        assert_eq!(h.released_chars(), 19);
    }

    #[test]
    fn a_whitespace_run_across_pushes_is_held_and_redacted_with_the_phrase() {
        let mut h = HoldbackBuffer::new(0, Some(matcher(&["kill him"]))).unwrap();
        assert_eq!(h.push("ok kill").unwrap().0, "ok ");
        for t in [" ", "\u{a0}", "\n", " \t"] {
            assert_eq!(h.push(t).unwrap().0, "");
        }
        assert_eq!(h.push("him").unwrap().0, "");
        let (out, m) = h.push("!").unwrap();
        assert_eq!(out, "");
        assert_eq!(
            m.iter().map(Match::as_tuple).collect::<Vec<_>>(),
            vec![(0, 3, 15)]
        );
        h.redact(3, 15, "#").unwrap();
        assert_eq!(h.release().unwrap(), "#!");
    }

    #[test]
    fn redactions_merge_and_never_split() {
        let mut h = HoldbackBuffer::new(0, None).unwrap();
        h.hold_from(Some(0));
        h.push("0123456789").unwrap();
        h.redact(2, 5, "A").unwrap();
        h.redact(4, 7, "B").unwrap();
        h.redact(8, 9, "C").unwrap();
        h.hold_from(Some(3));
        assert_eq!(h.release().unwrap(), "01");
        h.hold_from(None);
        assert_eq!(h.release().unwrap(), "A7C9");
        assert!(h.redact(1, 2, "x").is_err());
    }

    #[test]
    fn stop_discards_and_refuses() {
        let mut h = HoldbackBuffer::new(4, None).unwrap();
        h.push("secret").unwrap();
        h.stop();
        assert!(h.is_stopped());
        assert_eq!(h.held_text(), "");
        assert!(h.push("x").is_err());
        assert!(h.release().is_err());
        assert!(h.flush().is_err());
    }

    #[test]
    fn finish_reports_a_match_at_the_very_end() {
        let mut h = HoldbackBuffer::new(0, Some(matcher(&["bad"]))).unwrap();
        assert_eq!(h.push("so bad").unwrap(), ("so ".to_string(), vec![]));
        let m = h.finish().unwrap();
        assert_eq!(
            m.iter().map(Match::as_tuple).collect::<Vec<_>>(),
            vec![(0, 3, 6)]
        );
        assert!(h.push("more").is_err());
        h.redact(3, 6, "***").unwrap();
        assert_eq!(h.flush().unwrap(), "***");
    }
}
