//! Streaming multi-phrase matcher: one shared automaton, a few hundred bytes of state per stream.
//!
//! # Why the `aho-corasick` crate and not our own automaton
//! The crate (BurntSushi's, the engine under `regex`) builds a well-tested Aho-Corasick automaton
//! with byte classes and, through its `automaton::Automaton` trait, hands out raw state ids with
//! `next_state(state, byte)`. That is all streaming needs: a stream keeps one `StateID`, so a
//! phrase split across chunks (or across the bytes of a code point) is found exactly as in the
//! whole text, with no re-scan of a tail. Writing our own trie/failure-link construction would
//! duplicate that work and its tests for no gain. We pick the crate's DFA (one table lookup per
//! byte) up to [`DFA_MAX_PHRASES`] phrases and its contiguous NFA above that, where the DFA's
//! memory (states x byte classes) stops being worth it.
//!
//! # What the stream does per chunk
//! 1. Normalise the chunk one code point at a time ([`crate::normalize`]) into a byte buffer,
//!    noting which original char produced each normalised byte (implicit for ASCII chunks).
//!    Whitespace runs collapse to one space here too; one bit (did the last chunk end in a
//!    space) carries a run across chunks, so "kill " + " \n him" finds "kill him".
//! 2. Step the automaton over that buffer in a tight loop that only records the positions of
//!    match states. This is the same loop as the crate's own search; keeping bookkeeping out of
//!    it is what makes the streamed matcher as fast as a plain scan.
//! 3. Turn the recorded positions into matches: original offsets, and word boundaries read from
//!    the normalised bytes around the match (the chunk, or a small history ring of the previous
//!    chunks' last bytes). A whole-word match that ends the chunk waits in `pending` until the
//!    next normalised char (or the end of the stream) decides its trailing boundary.
//!
//! Matches are emitted sorted by `(end, start, phrase)`, and only once no undecided match could
//! still sort before them, so that the concatenation of all `feed` results plus `finish` equals
//! [`PhraseMatcher::find_all`].
//!
//! We also tried a second, anchored automaton walked from every word start for whole-word
//! phrases (walks die early in shallow, cache-hot states). Measured on English prose it was
//! ~1.6x *slower* than the single unanchored scan (more bookkeeping per word, no fewer cache
//! misses), so it was dropped; see benches/RESULTS.md.
//!
//! # `pending`
//! Each automaton state is a trie node; its depth is the longest suffix of the normalised text
//! that is a prefix of some phrase. We record the depth of every state at build time (walking
//! each phrase once), so `pending` (original chars that could still become part of a match) is one
//! hash lookup plus one history lookup.

use std::sync::Arc;

use aho_corasick::automaton::{Automaton, StateID};
use aho_corasick::dfa::DFA;
use aho_corasick::nfa::contiguous::NFA;
use aho_corasick::{dfa, nfa, Anchored, MatchKind, StartKind};
use rustc_hash::FxHashMap;

use crate::normalize::{is_word_char, Normalizer};
use crate::CoreError;

/// Above this many phrases the contiguous NFA is used instead of the DFA (memory).
pub const DFA_MAX_PHRASES: usize = 20_000;
/// Refuse phrase sets larger than this (count).
pub const MAX_PHRASES: usize = 5_000_000;
/// Refuse a phrase whose normalised form is longer than this many bytes.
pub const MAX_PHRASE_BYTES: usize = 4096;
/// Refuse phrase sets whose normalised forms add up to more than this many bytes.
pub const MAX_TOTAL_BYTES: usize = 256 << 20;

/// One match: phrase index and end-exclusive char offsets into the original text.
/// Field order makes the derived ordering `(end, start, phrase)`, the order matches are reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Match {
    pub end: usize,
    pub start: usize,
    pub phrase: usize,
}

impl Match {
    /// `(phrase, start, end)`, the tuple the Python API uses.
    pub fn as_tuple(&self) -> (usize, usize, usize) {
        (self.phrase, self.start, self.end)
    }
}

/// Whole-word setting: one value for every phrase, or one per phrase.
#[derive(Debug, Clone, Copy)]
pub enum WholeWord<'a> {
    All(bool),
    PerPhrase(&'a [bool]),
}

#[derive(Debug, Clone, Copy)]
struct PhraseInfo {
    /// Normalised length in bytes.
    len: usize,
    /// Needs a non-word char (or the start of text) before it.
    need_start: bool,
    /// Needs a non-word char (or the end of text) after it.
    need_end: bool,
}

#[derive(Debug)]
enum Engine {
    Dfa(DFA),
    Nfa(NFA),
}

/// An immutable compiled phrase set. Share it (`Arc`) between any number of streams/threads.
#[derive(Debug)]
pub struct PhraseMatcher {
    normalizer: Normalizer,
    engine: Engine,
    start: StateID,
    phrases: Vec<PhraseInfo>,
    normalized: Vec<String>,
    depth: FxHashMap<StateID, u32>,
    max_len: usize,
}

const ASCII_WORD: [bool; 128] = {
    let mut t = [false; 128];
    let mut i = 0;
    while i < 128 {
        t[i] = (i as u8).is_ascii_alphanumeric();
        i += 1;
    }
    t
};

fn build_error(e: aho_corasick::BuildError) -> CoreError {
    CoreError::InvalidPattern(format!("the phrase set is too large to compile: {e}"))
}

impl PhraseMatcher {
    /// Compiles `phrases` (normalised with the same [`Normalizer`] as the text).
    pub fn new<S: AsRef<str>>(
        phrases: &[S],
        whole_word: WholeWord<'_>,
        leetspeak: bool,
    ) -> Result<Self, CoreError> {
        if phrases.is_empty() {
            return Err(CoreError::InvalidPattern("the phrase list is empty".into()));
        }
        if phrases.len() > MAX_PHRASES {
            return Err(CoreError::InvalidPattern(format!(
                "{} phrases is more than the limit of {MAX_PHRASES}",
                phrases.len()
            )));
        }
        if let WholeWord::PerPhrase(ww) = whole_word {
            if ww.len() != phrases.len() {
                return Err(CoreError::InvalidArgument(format!(
                    "whole_word has {} entries for {} phrases",
                    ww.len(),
                    phrases.len()
                )));
            }
        }
        let normalizer = Normalizer::new(leetspeak);
        let mut normalized = Vec::with_capacity(phrases.len());
        let mut infos = Vec::with_capacity(phrases.len());
        let mut total = 0usize;
        for (i, p) in phrases.iter().enumerate() {
            let p = p.as_ref();
            if p.len() > MAX_PHRASE_BYTES * 4 {
                return Err(CoreError::InvalidPattern(format!(
                    "phrase {i} is {} bytes long (limit {MAX_PHRASE_BYTES} normalised)",
                    p.len()
                )));
            }
            // Text around a phrase is not part of it: leading/trailing whitespace is dropped.
            let n = normalizer.normalize(p).trim_matches(' ').to_owned();
            if n.is_empty() {
                return Err(CoreError::InvalidPattern(format!(
                    "phrase {i} ({p:?}) is empty after normalisation"
                )));
            }
            if n.len() > MAX_PHRASE_BYTES {
                return Err(CoreError::InvalidPattern(format!(
                    "phrase {i} is {} bytes long once normalised (limit {MAX_PHRASE_BYTES})",
                    n.len()
                )));
            }
            total += n.len();
            if total > MAX_TOTAL_BYTES {
                return Err(CoreError::InvalidPattern(format!(
                    "the phrases add up to more than {MAX_TOTAL_BYTES} bytes (at phrase {i})"
                )));
            }
            let ww = match whole_word {
                WholeWord::All(b) => b,
                WholeWord::PerPhrase(v) => v[i],
            };
            // A phrase that itself begins/ends with a non-word char needs no boundary there.
            let first = n.chars().next().is_some_and(is_word_char);
            let last = n.chars().next_back().is_some_and(is_word_char);
            infos.push(PhraseInfo {
                len: n.len(),
                need_start: ww && first,
                need_end: ww && last,
            });
            normalized.push(n);
        }

        let engine = if normalized.len() <= DFA_MAX_PHRASES {
            Engine::Dfa(
                dfa::Builder::new()
                    .match_kind(MatchKind::Standard)
                    .start_kind(StartKind::Unanchored)
                    .prefilter(false)
                    .byte_classes(true)
                    .build(&normalized)
                    .map_err(build_error)?,
            )
        } else {
            Engine::Nfa(
                nfa::contiguous::Builder::new()
                    .match_kind(MatchKind::Standard)
                    .prefilter(false)
                    .byte_classes(true)
                    .build(&normalized)
                    .map_err(build_error)?,
            )
        };
        let (start, depth) = match &engine {
            Engine::Dfa(a) => state_depths(a, &normalized)?,
            Engine::Nfa(a) => state_depths(a, &normalized)?,
        };
        let max_len = infos.iter().map(|p| p.len).max().unwrap_or(1);
        Ok(Self {
            normalizer,
            engine,
            start,
            phrases: infos,
            normalized,
            depth,
            max_len,
        })
    }

    /// Number of phrases.
    pub fn len(&self) -> usize {
        self.phrases.len()
    }

    /// Never true: an empty phrase list is refused.
    pub fn is_empty(&self) -> bool {
        self.phrases.is_empty()
    }

    /// The normalised form of phrase `i`.
    pub fn normalized_phrase(&self, i: usize) -> Option<&str> {
        self.normalized.get(i).map(String::as_str)
    }

    pub fn normalizer(&self) -> Normalizer {
        self.normalizer
    }

    /// "dfa" or "nfa": which automaton was built.
    pub fn engine_kind(&self) -> &'static str {
        match self.engine {
            Engine::Dfa(_) => "dfa",
            Engine::Nfa(_) => "nfa",
        }
    }

    /// Approximate heap bytes held (automaton, depth table, normalised phrases).
    pub fn memory_usage(&self) -> usize {
        let aut = match &self.engine {
            Engine::Dfa(a) => a.memory_usage(),
            Engine::Nfa(a) => a.memory_usage(),
        };
        let depth = self.depth.capacity() * (std::mem::size_of::<(StateID, u32)>() + 1);
        let phrases = self
            .normalized
            .iter()
            .map(|s| s.capacity() + 24)
            .sum::<usize>()
            + self.phrases.capacity() * std::mem::size_of::<PhraseInfo>();
        aut + depth + phrases
    }

    /// A new stream over this phrase set.
    pub fn stream(self: &Arc<Self>) -> MatchStream {
        MatchStream::new(Arc::clone(self))
    }

    /// All (overlapping) matches in `text`, sorted by `(end, start, phrase)`.
    pub fn find_all(&self, text: &str) -> Vec<Match> {
        let mut cur = Cursor::new(self);
        let mut out = Vec::new();
        cur.feed_str(self, text);
        cur.finish(&mut out);
        out
    }
}

/// Walks every phrase from the start state and records the depth of each trie node.
fn state_depths<A: Automaton>(
    aut: &A,
    phrases: &[String],
) -> Result<(StateID, FxHashMap<StateID, u32>), CoreError> {
    let start = aut
        .start_state(Anchored::No)
        .map_err(|e| CoreError::InvalidPattern(format!("automaton has no start state: {e}")))?;
    let mut depth = FxHashMap::default();
    depth.insert(start, 0u32);
    for p in phrases {
        let mut sid = start;
        for (i, &b) in p.as_bytes().iter().enumerate() {
            sid = aut.next_state(Anchored::No, sid, b);
            let d = depth.entry(sid).or_insert(0);
            *d = (*d).max(i as u32 + 1);
        }
    }
    Ok((start, depth))
}

/// Per-stream state, kept apart from the shared matcher so the two can be borrowed separately.
#[derive(Debug, Clone)]
struct Cursor {
    state: StateID,
    /// The last normalised byte was a space (a whitespace run may go on in the next chunk).
    space: bool,
    /// Normalised bytes consumed.
    byte_pos: usize,
    /// Original chars consumed.
    char_pos: usize,
    /// The last `mask + 1` normalised bytes and the original char each came from.
    hist_byte: Box<[u8]>,
    hist_orig: Box<[usize]>,
    mask: usize,
    /// Whole-word matches waiting for the next char; all end at the current position.
    pending: Vec<Match>,
    /// Decided matches not yet handed out (kept back while `pending` could sort before them).
    ready: Vec<Match>,
    /// Per-chunk scratch: normalised bytes, their original chars (empty for ASCII chunks),
    /// match-state positions, one code point's fold.
    nbuf: Vec<u8>,
    norig: Vec<usize>,
    hits: Vec<(usize, StateID)>,
    scratch: Vec<char>,
}

/// Where the current chunk's normalised bytes are, for lookups by absolute byte position.
struct Chunk<'a> {
    base_byte: usize,
    base_char: usize,
    bytes: &'a [u8],
    /// Empty when the chunk was ASCII (then byte k came from char `base_char + k`).
    orig: &'a [usize],
}

impl Cursor {
    fn new(m: &PhraseMatcher) -> Self {
        // History must reach a match's start and the (up to 4-byte) char before it.
        let cap = (m.max_len + 8).next_power_of_two();
        Self {
            state: m.start,
            space: false,
            byte_pos: 0,
            char_pos: 0,
            hist_byte: vec![0u8; cap].into_boxed_slice(),
            hist_orig: vec![0usize; cap].into_boxed_slice(),
            mask: cap - 1,
            pending: Vec::new(),
            ready: Vec::new(),
            nbuf: Vec::new(),
            norig: Vec::new(),
            hits: Vec::new(),
            scratch: Vec::new(),
        }
    }

    /// Long texts go through in blocks so the per-chunk buffers stay in cache.
    fn feed_str(&mut self, m: &PhraseMatcher, text: &str) {
        const BLOCK: usize = 8 << 10;
        let mut rest = text;
        while !rest.is_empty() {
            let mut cut = rest.len().min(BLOCK);
            while !rest.is_char_boundary(cut) {
                cut -= 1;
            }
            let (head, tail) = rest.split_at(cut);
            match &m.engine {
                Engine::Dfa(a) => self.feed_with(m, a, head),
                Engine::Nfa(a) => self.feed_with(m, a, head),
            }
            rest = tail;
        }
    }

    /// Step 1: the chunk's normalised bytes (and their original chars unless ASCII with no
    /// whitespace run to collapse).
    fn normalize_chunk(&mut self, m: &PhraseMatcher, text: &str) -> usize {
        let table = m.normalizer.ascii_table();
        self.nbuf.clear();
        self.norig.clear();
        if text.is_ascii() {
            let mut space = self.space;
            let collapses = text.bytes().any(|b| {
                let sp = table[b as usize] == b' ';
                let run = sp && space;
                space = sp;
                run
            });
            if !collapses {
                self.nbuf.extend(text.bytes().map(|b| table[b as usize]));
                self.space = space;
                return text.len();
            }
        }
        let mut scratch = std::mem::take(&mut self.scratch);
        let mut n = 0;
        for c in text.chars() {
            let orig = self.char_pos + n;
            n += 1;
            if c.is_ascii() {
                self.push_collapsed(&[table[c as usize]], orig);
                continue;
            }
            if let Some(bytes) = m.normalizer.cached_utf8(c) {
                self.push_collapsed(bytes, orig);
                continue;
            }
            scratch.clear();
            m.normalizer.fold_uncached(c, &mut scratch);
            for &nc in &scratch {
                let mut buf = [0u8; 4];
                self.push_collapsed(nc.encode_utf8(&mut buf).as_bytes(), orig);
            }
        }
        self.scratch = scratch;
        n
    }

    /// Appends the normalised bytes of one original char, a space right after a space left out
    /// (the bytes of a multi-byte char are never 0x20).
    #[inline]
    fn push_collapsed(&mut self, bytes: &[u8], orig: usize) {
        for &b in bytes {
            let sp = b == b' ';
            if sp && self.space {
                continue;
            }
            self.space = sp;
            self.nbuf.push(b);
            self.norig.push(orig);
        }
    }

    fn feed_with<A: Automaton>(&mut self, m: &PhraseMatcher, aut: &A, text: &str) {
        let chars = self.normalize_chunk(m, text);
        let nbuf = std::mem::take(&mut self.nbuf);
        let norig = std::mem::take(&mut self.norig);
        let mut hits = std::mem::take(&mut self.hits);
        let chunk = Chunk {
            base_byte: self.byte_pos,
            base_char: self.char_pos,
            bytes: &nbuf,
            orig: &norig,
        };
        if !self.pending.is_empty() && !nbuf.is_empty() {
            self.resolve_pending(char_is_word_at(&nbuf, 0));
        }

        // Step 2: the tight loop.
        hits.clear();
        let mut sid = self.state;
        for (k, &b) in nbuf.iter().enumerate() {
            sid = aut.next_state(Anchored::No, sid, b);
            if aut.is_match(sid) {
                hits.push((k, sid));
            }
        }
        self.state = sid;

        // Step 3: matches with offsets and word boundaries.
        for &(k, sid) in &hits {
            self.collect(m, aut, &chunk, k, sid);
        }

        // History for the next chunk; then advance.
        let from = nbuf.len().saturating_sub(self.mask + 1);
        for (k, &b) in nbuf.iter().enumerate().skip(from) {
            let at = (chunk.base_byte + k) & self.mask;
            self.hist_byte[at] = b;
            self.hist_orig[at] = self.orig_at(&chunk, chunk.base_byte + k);
        }
        self.byte_pos += nbuf.len();
        self.char_pos += chars;
        self.nbuf = nbuf;
        self.norig = norig;
        self.hits = hits;
    }

    #[inline]
    fn byte_at(&self, c: &Chunk<'_>, pos: usize) -> u8 {
        if pos >= c.base_byte {
            c.bytes[pos - c.base_byte]
        } else {
            self.hist_byte[pos & self.mask]
        }
    }

    #[inline]
    fn orig_at(&self, c: &Chunk<'_>, pos: usize) -> usize {
        if pos < c.base_byte {
            self.hist_orig[pos & self.mask]
        } else if c.orig.is_empty() {
            c.base_char + (pos - c.base_byte)
        } else {
            c.orig[pos - c.base_byte]
        }
    }

    /// Whether the normalised char that ends just before byte `pos` is a word char.
    fn word_before(&self, c: &Chunk<'_>, pos: usize) -> bool {
        if pos == 0 {
            return false;
        }
        let last = self.byte_at(c, pos - 1);
        if last < 0x80 {
            return ASCII_WORD[last as usize];
        }
        // Walk back to the lead byte (at most 4 bytes, all within the history).
        let mut buf = [0u8; 4];
        let mut n = 0;
        while n < 4 && n < pos {
            let b = self.byte_at(c, pos - 1 - n);
            buf[3 - n] = b;
            n += 1;
            if b & 0xC0 != 0x80 {
                break;
            }
        }
        std::str::from_utf8(&buf[4 - n..])
            .ok()
            .and_then(|s| s.chars().next())
            .is_some_and(is_word_char)
    }

    #[cold]
    fn collect<A: Automaton>(
        &mut self,
        m: &PhraseMatcher,
        aut: &A,
        c: &Chunk<'_>,
        k: usize,
        sid: StateID,
    ) {
        let end_pos = c.base_byte + k + 1;
        let end = self.orig_at(c, end_pos - 1) + 1;
        for i in 0..aut.match_len(sid) {
            let pid = aut.match_pattern(sid, i).as_usize();
            let info = m.phrases[pid];
            let start_pos = end_pos - info.len;
            if info.need_start && self.word_before(c, start_pos) {
                continue;
            }
            let found = Match {
                end,
                start: self.orig_at(c, start_pos),
                phrase: pid,
            };
            if !info.need_end {
                self.ready.push(found);
            } else if k + 1 == c.bytes.len() {
                self.pending.push(found);
            } else if !char_is_word_at(c.bytes, k + 1) {
                self.ready.push(found);
            }
        }
    }

    fn resolve_pending(&mut self, next_is_word: bool) {
        if next_is_word {
            self.pending.clear();
        } else {
            self.ready.append(&mut self.pending);
        }
    }

    /// Moves out the matches that nothing undecided can sort before.
    fn take_ready(&mut self, out: &mut Vec<Match>) {
        if self.ready.is_empty() {
            return;
        }
        self.ready.sort_unstable();
        let cut = match self.pending.first() {
            Some(p) => self.ready.partition_point(|r| r.end < p.end),
            None => self.ready.len(),
        };
        out.extend(self.ready.drain(..cut));
    }

    fn finish(&mut self, out: &mut Vec<Match>) {
        self.resolve_pending(false);
        self.take_ready(out);
    }

    fn pending_chars(&self, m: &PhraseMatcher) -> usize {
        let mut earliest = self.char_pos;
        let depth = m
            .depth
            .get(&self.state)
            .map_or(m.max_len, |&d| d as usize)
            .min(self.byte_pos);
        if depth > 0 {
            earliest = earliest.min(self.hist_orig[(self.byte_pos - depth) & self.mask]);
        }
        for p in &self.pending {
            earliest = earliest.min(p.start);
        }
        self.char_pos - earliest
    }
}

/// Whether the normalised char starting at `bytes[k]` is a word char.
#[inline]
fn char_is_word_at(bytes: &[u8], k: usize) -> bool {
    let b = bytes[k];
    if b < 0x80 {
        return ASCII_WORD[b as usize];
    }
    let n = match b {
        0xF0.. => 4,
        0xE0.. => 3,
        _ => 2,
    };
    bytes
        .get(k..k + n)
        .and_then(|s| std::str::from_utf8(s).ok())
        .and_then(|s| s.chars().next())
        .is_some_and(is_word_char)
}

/// One stream over a shared [`PhraseMatcher`].
#[derive(Debug, Clone)]
pub struct MatchStream {
    matcher: Arc<PhraseMatcher>,
    cur: Cursor,
    carry: [u8; 4],
    carry_len: usize,
    finished: bool,
}

impl MatchStream {
    pub fn new(matcher: Arc<PhraseMatcher>) -> Self {
        let cur = Cursor::new(&matcher);
        Self {
            matcher,
            cur,
            carry: [0; 4],
            carry_len: 0,
            finished: false,
        }
    }

    pub fn matcher(&self) -> &Arc<PhraseMatcher> {
        &self.matcher
    }

    fn check_open(&self) -> Result<(), CoreError> {
        if self.finished {
            Err(CoreError::InvalidState(
                "the stream is finished; start a new one".into(),
            ))
        } else {
            Ok(())
        }
    }

    /// Feeds the next chunk and appends the newly decided matches to `out`.
    pub fn feed_into(&mut self, text: &str, out: &mut Vec<Match>) -> Result<(), CoreError> {
        self.check_open()?;
        if self.carry_len != 0 {
            return Err(CoreError::InvalidState(
                "a partial UTF-8 code point from feed_bytes is pending; continue with feed_bytes"
                    .into(),
            ));
        }
        self.cur.feed_str(&self.matcher, text);
        self.cur.take_ready(out);
        Ok(())
    }

    /// Feeds the next chunk; returns the newly decided matches (absolute char offsets).
    pub fn feed(&mut self, text: &str) -> Result<Vec<Match>, CoreError> {
        let mut out = Vec::new();
        self.feed_into(text, &mut out)?;
        Ok(out)
    }

    /// Feeds raw UTF-8; a code point cut at the end is kept for the next call. Invalid UTF-8 is
    /// an error and leaves the stream unchanged.
    pub fn feed_bytes(&mut self, data: &[u8]) -> Result<Vec<Match>, CoreError> {
        self.check_open()?;
        let joined;
        let buf: &[u8] = if self.carry_len == 0 {
            data
        } else {
            let mut v = Vec::with_capacity(self.carry_len + data.len());
            v.extend_from_slice(&self.carry[..self.carry_len]);
            v.extend_from_slice(data);
            joined = v;
            &joined
        };
        let (valid, rest) = match std::str::from_utf8(buf) {
            Ok(s) => (s, &buf[buf.len()..]),
            Err(e) if e.error_len().is_none() => {
                let (head, tail) = buf.split_at(e.valid_up_to());
                // `head` is exactly the valid prefix reported by `from_utf8`.
                let head = std::str::from_utf8(head).map_err(|e| {
                    CoreError::InvalidArgument(format!("invalid UTF-8 in chunk: {e}"))
                })?;
                (head, tail)
            }
            Err(e) => {
                let at = e.valid_up_to().saturating_sub(self.carry_len);
                return Err(CoreError::InvalidArgument(format!(
                    "invalid UTF-8 at byte {at} of the chunk (stream position {} chars); \
                     the chunk was not consumed",
                    self.cur.char_pos
                )));
            }
        };
        let mut out = Vec::new();
        self.cur.feed_str(&self.matcher, valid);
        self.cur.take_ready(&mut out);
        let mut carry = [0u8; 4];
        carry[..rest.len()].copy_from_slice(rest);
        self.carry = carry;
        self.carry_len = rest.len();
        Ok(out)
    }

    /// Ends the stream: decides the matches still waiting for a word boundary.
    pub fn finish(&mut self) -> Result<Vec<Match>, CoreError> {
        self.check_open()?;
        if self.carry_len != 0 {
            return Err(CoreError::InvalidArgument(format!(
                "the stream ended inside a UTF-8 code point ({} bytes left over)",
                self.carry_len
            )));
        }
        let mut out = Vec::new();
        self.cur.finish(&mut out);
        self.finished = true;
        Ok(out)
    }

    /// Trailing chars of the text fed so far that could still become (part of) a match,
    /// including a complete whole-word match that waits for its boundary.
    pub fn pending(&self) -> usize {
        if self.finished {
            0
        } else {
            self.cur.pending_chars(&self.matcher)
        }
    }

    /// Chars fed so far (a partial code point from `feed_bytes` not counted).
    pub fn position(&self) -> usize {
        self.cur.char_pos
    }

    pub fn is_finished(&self) -> bool {
        self.finished
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matcher(phrases: &[&str], ww: bool) -> Arc<PhraseMatcher> {
        Arc::new(PhraseMatcher::new(phrases, WholeWord::All(ww), false).unwrap())
    }

    fn tuples(v: &[Match]) -> Vec<(usize, usize, usize)> {
        v.iter().map(Match::as_tuple).collect()
    }

    #[test]
    fn whole_word_skips_words_that_contain_the_phrase() {
        let m = matcher(&["hell", "kill"], true);
        assert!(m.find_all("hello skills").is_empty());
        assert_eq!(
            tuples(&m.find_all("go to hell, kill!")),
            vec![(0, 6, 10), (1, 12, 16)]
        );
        let sub = matcher(&["hell"], false);
        assert_eq!(tuples(&sub.find_all("hello")), vec![(0, 0, 4)]);
    }

    #[test]
    fn finds_obfuscated_variants() {
        let m = matcher(&["bad word"], true);
        for t in [
            "BAD WORD",
            "b\u{430}d w\u{43e}rd",
            "ｂａｄ ｗｏｒｄ",
            "b\u{200d}ad\u{a0}word",
        ] {
            assert_eq!(m.find_all(t).len(), 1, "{t:?}");
        }
        let leet = PhraseMatcher::new(&["kill"], WholeWord::All(true), true).unwrap();
        assert_eq!(tuples(&leet.find_all("k1ll")), vec![(0, 0, 4)]);
    }

    #[test]
    fn whitespace_runs_match_one_space_in_any_chunking() {
        let m = matcher(&["kill him", " \t spaced\u{a0} out  "], true);
        assert_eq!(m.normalized_phrase(1), Some("spaced out"));
        let text = "kill  him, kill\u{a0}\nhim; kill \t him. spaced \u{200b}\r\n out";
        let whole = tuples(&m.find_all(text));
        assert_eq!(
            whole,
            vec![(0, 0, 9), (0, 11, 20), (0, 22, 32), (1, 34, 48)]
        );
        let chars: Vec<char> = text.chars().collect();
        for a in 0..=chars.len() {
            for b in a..=chars.len() {
                let mut s = m.stream();
                let mut got = Vec::new();
                for piece in [&chars[..a], &chars[a..b], &chars[b..]] {
                    got.extend(s.feed(&piece.iter().collect::<String>()).unwrap());
                }
                got.extend(s.finish().unwrap());
                assert_eq!(tuples(&got), whole, "cuts {a} {b}");
            }
        }
        let mut s = m.stream();
        s.feed("kill ").unwrap();
        s.feed(" \u{a0}\n").unwrap();
        assert_eq!(s.pending(), 8);
    }

    #[test]
    fn overlapping_and_duplicate_phrases_all_report() {
        let m = matcher(&["abc", "bc", "ABC", "c"], false);
        assert_eq!(
            tuples(&m.find_all("xabc")),
            vec![(0, 1, 4), (2, 1, 4), (1, 2, 4), (3, 3, 4)]
        );
    }

    #[test]
    fn streaming_equals_whole_text_for_every_split() {
        let m = matcher(&["kill him", "ab", "b", "é x"], true);
        let text = "ab kill  him; kill him ab b e\u{301} x é x";
        let whole = m.find_all(text);
        let chars: Vec<char> = text.chars().collect();
        for cut in 0..=chars.len() {
            let (a, b): (String, String) =
                (chars[..cut].iter().collect(), chars[cut..].iter().collect());
            let mut s = m.stream();
            let mut got = s.feed(&a).unwrap();
            got.extend(s.feed(&b).unwrap());
            got.extend(s.finish().unwrap());
            assert_eq!(got, whole, "cut {cut}");
        }
        let bytes = text.as_bytes();
        for cut in 0..=bytes.len() {
            let mut s = m.stream();
            let mut got = s.feed_bytes(&bytes[..cut]).unwrap();
            got.extend(s.feed_bytes(&bytes[cut..]).unwrap());
            got.extend(s.finish().unwrap());
            assert_eq!(got, whole, "byte cut {cut}");
        }
    }

    #[test]
    fn pending_counts_a_possible_match_prefix_and_an_undecided_word() {
        let m = matcher(&["kill him"], true);
        let mut s = m.stream();
        s.feed("I will ki").unwrap();
        assert_eq!(s.pending(), 2);
        s.feed("ll him").unwrap();
        assert_eq!(s.pending(), 8);
        assert_eq!(tuples(&s.feed(".").unwrap()), vec![(0, 7, 15)]);
        assert_eq!(s.pending(), 0);
        let mut z = m.stream();
        z.feed("kill\u{200b}\u{200b}").unwrap();
        assert_eq!(z.pending(), 6);
    }

    #[test]
    fn bad_input_is_an_error() {
        assert!(PhraseMatcher::new::<&str>(&[], WholeWord::All(true), false).is_err());
        let e = PhraseMatcher::new(&["ok", "\u{200b}"], WholeWord::All(true), false).unwrap_err();
        assert!(e.to_string().contains("phrase 1"), "{e}");
        assert!(PhraseMatcher::new(&["a"], WholeWord::PerPhrase(&[true, false]), false).is_err());
        let m = matcher(&["x"], true);
        let mut s = m.stream();
        s.feed_bytes(b"a \xc3").unwrap();
        assert!(s.feed_bytes(b"\xff").is_err());
        assert_eq!(s.position(), 2);
        s.feed_bytes(b"\xa9 x").unwrap();
        assert_eq!(tuples(&s.finish().unwrap()), vec![(0, 4, 5)]);
        assert!(s.feed("more").is_err());
    }

    #[test]
    fn large_sets_use_the_nfa_and_agree_with_the_dfa() {
        let words: Vec<String> = (0..DFA_MAX_PHRASES + 5).map(|i| format!("w{i}x")).collect();
        let big = PhraseMatcher::new(&words, WholeWord::All(true), false).unwrap();
        assert_eq!(big.engine_kind(), "nfa");
        let small = PhraseMatcher::new(&words[..100], WholeWord::All(true), false).unwrap();
        assert_eq!(small.engine_kind(), "dfa");
        let text = "a w7x b w99x w100x w12";
        let got: Vec<_> = big
            .find_all(text)
            .into_iter()
            .filter(|m| m.phrase < 100)
            .collect();
        assert_eq!(got, small.find_all(text));
    }
}
