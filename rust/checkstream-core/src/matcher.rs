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
//! # Two automata: word-start walks and a classic scan
//! Most phrases are whole-word and begin with a word char, so they can only start where a word
//! starts. Those go into an automaton searched *anchored*: a walk starts at each word start and
//! dies (dead state) as soon as no phrase has that prefix, usually after a few bytes that sit in
//! the automaton's hot, shallow states. The unanchored search instead follows failure links
//! into deep, cold states on every byte; on a 10k-phrase set that cache traffic, not the
//! instruction count, is what limits throughput (measured: about 2x). Phrases that may start
//! anywhere (substring mode, or a phrase starting with a non-word char) use the classic
//! unanchored scan. A stream keeps one `StateID` for the scan and a short list of live walks.
//!
//! # What the stream does per character
//! Text is normalised one code point at a time ([`crate::normalize`]) and the normalised UTF-8
//! bytes are stepped through the automata. A ring buffer remembers, for recent normalised byte
//! positions, which original char produced them and whether the normalised char before was a
//! word char; that gives each unanchored match its original start offset and its leading word
//! boundary (a walk carries its own start). A whole-word match whose trailing boundary is still
//! unknown waits in `pending` until the next normalised char (or the end of the stream) decides
//! it. Matches are emitted sorted by `(end, start, phrase)`, and only once no undecided match
//! could still sort before them, so that the concatenation of all `feed` results plus `finish`
//! equals [`PhraseMatcher::find_all`].
//!
//! # `pending`
//! Each unanchored state is a trie node; its depth is the longest suffix of the normalised text
//! that is a prefix of some phrase. We record the depth of every state at build time (walking
//! each phrase once). `pending` (original chars that could still become part of a match) is the
//! distance back to the earliest of: that suffix, a live walk's start, an undecided match.

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

/// One compiled automaton over a subset of the phrases.
#[derive(Debug)]
struct Part<A> {
    aut: A,
    start: StateID,
    /// Automaton pattern id -> phrase index.
    phrase: Vec<u32>,
}

#[derive(Debug)]
enum Engine {
    Dfa {
        scan: Option<Part<DFA>>,
        walk: Option<Part<DFA>>,
    },
    Nfa {
        scan: Option<Part<NFA>>,
        walk: Option<Part<NFA>>,
    },
}

/// An immutable compiled phrase set. Share it (`Arc`) between any number of streams/threads.
#[derive(Debug)]
pub struct PhraseMatcher {
    normalizer: Normalizer,
    engine: Engine,
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
        Self::build(phrases, whole_word, leetspeak, true)
    }

    /// Like [`PhraseMatcher::new`] but every phrase goes through the unanchored scan (no
    /// word-start walks). Same results; kept for benchmarks and tests of the two strategies.
    #[doc(hidden)]
    pub fn new_scan_only<S: AsRef<str>>(
        phrases: &[S],
        whole_word: WholeWord<'_>,
        leetspeak: bool,
    ) -> Result<Self, CoreError> {
        Self::build(phrases, whole_word, leetspeak, false)
    }

    fn build<S: AsRef<str>>(
        phrases: &[S],
        whole_word: WholeWord<'_>,
        leetspeak: bool,
        word_start_walks: bool,
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
            let n = normalizer.normalize(p);
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

        // Phrases that need a word start go to the anchored walk automaton, the rest to the scan.
        let (walk_ids, scan_ids): (Vec<usize>, Vec<usize>) =
            (0..infos.len()).partition(|&i| word_start_walks && infos[i].need_start);
        let mut depth = FxHashMap::default();
        let engine = if normalized.len() <= DFA_MAX_PHRASES {
            let build = |ids: &[usize], kind: StartKind| -> Result<Option<Part<DFA>>, CoreError> {
                if ids.is_empty() {
                    return Ok(None);
                }
                let aut = dfa::Builder::new()
                    .match_kind(MatchKind::Standard)
                    .start_kind(kind)
                    .prefilter(false)
                    .byte_classes(true)
                    .build(ids.iter().map(|&i| &normalized[i]))
                    .map_err(build_error)?;
                part(aut, ids, kind)
            };
            Engine::Dfa {
                scan: build(&scan_ids, StartKind::Unanchored)?,
                walk: build(&walk_ids, StartKind::Anchored)?,
            }
        } else {
            let build = |ids: &[usize], kind: StartKind| -> Result<Option<Part<NFA>>, CoreError> {
                if ids.is_empty() {
                    return Ok(None);
                }
                let aut = nfa::contiguous::Builder::new()
                    .match_kind(MatchKind::Standard)
                    .prefilter(false)
                    .byte_classes(true)
                    .build(ids.iter().map(|&i| &normalized[i]))
                    .map_err(build_error)?;
                part(aut, ids, kind)
            };
            Engine::Nfa {
                scan: build(&scan_ids, StartKind::Unanchored)?,
                walk: build(&walk_ids, StartKind::Anchored)?,
            }
        };
        match &engine {
            Engine::Dfa { scan: Some(p), .. } => state_depths(p, &normalized, &mut depth),
            Engine::Nfa { scan: Some(p), .. } => state_depths(p, &normalized, &mut depth),
            _ => {}
        }
        let max_len = infos.iter().map(|p| p.len).max().unwrap_or(1);
        Ok(Self {
            normalizer,
            engine,
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
            Engine::Dfa { .. } => "dfa",
            Engine::Nfa { .. } => "nfa",
        }
    }

    /// Approximate heap bytes held (automaton, depth table, normalised phrases).
    pub fn memory_usage(&self) -> usize {
        fn mem<A: Automaton>(p: &Option<Part<A>>) -> usize {
            p.as_ref()
                .map_or(0, |p| p.aut.memory_usage() + p.phrase.capacity() * 4)
        }
        let aut = match &self.engine {
            Engine::Dfa { scan, walk } => mem(scan) + mem(walk),
            Engine::Nfa { scan, walk } => mem(scan) + mem(walk),
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

fn part<A: Automaton>(
    aut: A,
    ids: &[usize],
    kind: StartKind,
) -> Result<Option<Part<A>>, CoreError> {
    let anchored = if kind == StartKind::Anchored {
        Anchored::Yes
    } else {
        Anchored::No
    };
    let start = aut
        .start_state(anchored)
        .map_err(|e| CoreError::InvalidPattern(format!("automaton has no start state: {e}")))?;
    Ok(Some(Part {
        aut,
        start,
        phrase: ids.iter().map(|&i| i as u32).collect(),
    }))
}

/// Walks every scan phrase from the start state and records the depth of each trie node.
fn state_depths<A: Automaton>(
    part: &Part<A>,
    normalized: &[String],
    depth: &mut FxHashMap<StateID, u32>,
) {
    depth.insert(part.start, 0u32);
    for &i in &part.phrase {
        let mut sid = part.start;
        for (k, &b) in normalized[i as usize].as_bytes().iter().enumerate() {
            sid = part.aut.next_state(Anchored::No, sid, b);
            let d = depth.entry(sid).or_insert(0);
            *d = (*d).max(k as u32 + 1);
        }
    }
}

/// A live anchored walk that began at a word start.
#[derive(Debug, Clone, Copy)]
struct Walk {
    sid: StateID,
    /// Original char index of the word start.
    start: usize,
    /// Normalised byte position of the word start.
    start_byte: usize,
}

/// Per-stream state, kept apart from the shared matcher so the two can be borrowed separately.
#[derive(Debug, Clone)]
struct Cursor {
    /// State of the unanchored scan (unused when there is no scan automaton).
    state: StateID,
    /// Live anchored walks, one per recent word start that is still a phrase prefix.
    walks: Vec<Walk>,
    byte_pos: usize,
    char_pos: usize,
    /// For normalised byte positions that start a char: `orig_char << 1 | prev_char_is_word`.
    ring: Box<[usize]>,
    mask: usize,
    last_word: bool,
    /// Whole-word matches waiting for the next char; all end at the current position.
    pending: Vec<Match>,
    /// Decided matches not yet handed out (kept back while `pending` could sort before them).
    ready: Vec<Match>,
    scratch: Vec<char>,
}

impl Cursor {
    fn new(m: &PhraseMatcher) -> Self {
        let cap = (m.max_len + 1).next_power_of_two().max(16);
        let state = match &m.engine {
            Engine::Dfa { scan: Some(p), .. } => p.start,
            Engine::Nfa { scan: Some(p), .. } => p.start,
            _ => StateID::ZERO,
        };
        Self {
            state,
            walks: Vec::new(),
            byte_pos: 0,
            char_pos: 0,
            ring: vec![0usize; cap].into_boxed_slice(),
            mask: cap - 1,
            last_word: false,
            pending: Vec::new(),
            ready: Vec::new(),
            scratch: Vec::new(),
        }
    }

    fn feed_str(&mut self, m: &PhraseMatcher, text: &str) {
        match &m.engine {
            Engine::Dfa { scan, walk } => self.feed_with(m, scan.as_ref(), walk.as_ref(), text),
            Engine::Nfa { scan, walk } => self.feed_with(m, scan.as_ref(), walk.as_ref(), text),
        }
    }

    fn feed_with<A: Automaton>(
        &mut self,
        m: &PhraseMatcher,
        scan: Option<&Part<A>>,
        walk: Option<&Part<A>>,
        text: &str,
    ) {
        let table = m.normalizer.ascii_table();
        let bytes = text.as_bytes();
        let mut i = 0;
        while i < bytes.len() {
            let b = bytes[i];
            if b < 0x80 {
                let nb = table[b as usize];
                let orig = self.char_pos;
                self.char_pos += 1;
                self.step(m, scan, walk, &[nb], orig, ASCII_WORD[nb as usize]);
                i += 1;
                continue;
            }
            let Some(c) = text[i..].chars().next() else {
                break;
            };
            i += c.len_utf8();
            let orig = self.char_pos;
            self.char_pos += 1;
            let mut scratch = std::mem::take(&mut self.scratch);
            scratch.clear();
            m.normalizer.fold_non_ascii(c, &mut scratch);
            for &nc in &scratch {
                let mut buf = [0u8; 4];
                let enc = nc.encode_utf8(&mut buf);
                self.step(m, scan, walk, enc.as_bytes(), orig, is_word_char(nc));
            }
            self.scratch = scratch;
        }
    }

    /// Steps one normalised char (its UTF-8 bytes) produced by original char `orig`.
    #[inline(always)]
    fn step<A: Automaton>(
        &mut self,
        m: &PhraseMatcher,
        scan: Option<&Part<A>>,
        walk: Option<&Part<A>>,
        bytes: &[u8],
        orig: usize,
        is_word: bool,
    ) {
        if !self.pending.is_empty() {
            self.resolve_pending(is_word);
        }
        let first = self.byte_pos;
        self.byte_pos += bytes.len();
        if let Some(p) = scan {
            self.ring[first & self.mask] = (orig << 1) | usize::from(self.last_word);
            let mut sid = self.state;
            for &b in bytes {
                sid = p.aut.next_state(Anchored::No, sid, b);
            }
            self.state = sid;
            if p.aut.is_match(sid) {
                self.collect_scan(m, p, sid, orig);
            }
        }
        if let Some(p) = walk {
            if is_word && !self.last_word {
                self.walks.push(Walk {
                    sid: p.start,
                    start: orig,
                    start_byte: first,
                });
            }
            if !self.walks.is_empty() {
                self.step_walks(m, p, bytes, orig);
            }
        }
        self.last_word = is_word;
    }

    fn step_walks<A: Automaton>(
        &mut self,
        m: &PhraseMatcher,
        p: &Part<A>,
        bytes: &[u8],
        orig: usize,
    ) {
        let mut k = 0;
        while k < self.walks.len() {
            let mut sid = self.walks[k].sid;
            for &b in bytes {
                sid = p.aut.next_state(Anchored::Yes, sid, b);
            }
            if p.aut.is_dead(sid) {
                self.walks.swap_remove(k);
                continue;
            }
            self.walks[k].sid = sid;
            if p.aut.is_match(sid) {
                let w = self.walks[k];
                self.collect_walk(m, p, sid, w, orig);
            }
            k += 1;
        }
    }

    #[cold]
    fn collect_walk<A: Automaton>(
        &mut self,
        m: &PhraseMatcher,
        p: &Part<A>,
        sid: StateID,
        w: Walk,
        orig: usize,
    ) {
        let walked = self.byte_pos - w.start_byte;
        for k in 0..p.aut.match_len(sid) {
            let pid = p.phrase[p.aut.match_pattern(sid, k).as_usize()] as usize;
            let info = m.phrases[pid];
            // Only phrases that start at the walk's word start (not shorter suffixes).
            if info.len != walked {
                continue;
            }
            self.decided_or_pending(info, w.start, orig, pid);
        }
    }

    #[cold]
    fn collect_scan<A: Automaton>(
        &mut self,
        m: &PhraseMatcher,
        p: &Part<A>,
        sid: StateID,
        orig: usize,
    ) {
        for k in 0..p.aut.match_len(sid) {
            let pid = p.phrase[p.aut.match_pattern(sid, k).as_usize()] as usize;
            let info = m.phrases[pid];
            let entry = self.ring[(self.byte_pos - info.len) & self.mask];
            if info.need_start && entry & 1 == 1 {
                continue;
            }
            self.decided_or_pending(info, entry >> 1, orig, pid);
        }
    }

    #[inline]
    fn decided_or_pending(&mut self, info: PhraseInfo, start: usize, orig: usize, pid: usize) {
        let found = Match {
            end: orig + 1,
            start,
            phrase: pid,
        };
        if info.need_end {
            self.pending.push(found);
        } else {
            self.ready.push(found);
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
        self.walks.clear();
        self.take_ready(out);
    }

    fn pending_chars(&self, m: &PhraseMatcher) -> usize {
        let mut earliest = self.char_pos;
        if !m.depth.is_empty() {
            let depth = m
                .depth
                .get(&self.state)
                .map_or(m.max_len, |&d| d as usize)
                .min(self.byte_pos);
            if depth > 0 {
                earliest = earliest.min(self.ring[(self.byte_pos - depth) & self.mask] >> 1);
            }
        }
        for w in &self.walks {
            earliest = earliest.min(w.start);
        }
        for p in &self.pending {
            earliest = earliest.min(p.start);
        }
        self.char_pos - earliest
    }
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
                let at = e.valid_up_to() as isize - self.carry_len as isize;
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
    fn word_start_walks_agree_with_the_plain_scan() {
        let phrases = ["ab", "ab c", "b c", "-x", "c", "abc d", "d-"];
        let text = "ab c abc d -x ab-c xab c d- b c";
        for ww in [true, false] {
            let walk = PhraseMatcher::new(&phrases, WholeWord::All(ww), false).unwrap();
            let scan = PhraseMatcher::new_scan_only(&phrases, WholeWord::All(ww), false).unwrap();
            assert_eq!(walk.find_all(text), scan.find_all(text), "whole_word={ww}");
        }
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
