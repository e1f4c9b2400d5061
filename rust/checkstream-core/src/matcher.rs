//! Streaming multi-phrase matcher: one shared automaton, a few hundred bytes of state per stream.
//!
//! # Why the `aho-corasick` crate and not our own automaton
//! The crate (BurntSushi's, the engine under `regex`) builds a well-tested Aho-Corasick automaton
//! and, through its `automaton::Automaton` trait, hands out raw state ids with
//! `next_state(state, byte)`. That is all streaming needs: a stream keeps one state id, so a
//! phrase split across chunks (or across the bytes of a code point) is found exactly as in the
//! whole text, with no re-scan of a tail. Writing our own trie/failure-link construction would
//! duplicate that work and its tests for no gain. Up to [`DFA_MAX_PHRASES`] phrases we build the
//! crate's DFA and copy it into a table laid out for our scan (`automaton`: breadth-first state
//! order, match states last); above that, the crate's contiguous NFA, where a DFA's memory
//! (states x byte classes) stops being worth it.
//!
//! # Word-start markers
//! The automaton does not read the normalised text alone: before every word char that follows a
//! non-word char (or starts the text) the scan steps one extra byte, `MARK` (0xFF, never part
//! of UTF-8). Phrases are compiled the same way: a marker before each word start inside them,
//! and before the first char when the phrase needs a word boundary there. So:
//! - "the match starts at a word boundary" is enforced by the automaton itself;
//! - more importantly for speed, a whole-word phrase can only begin right after a marker, so
//!   inside a word that begins no phrase the automaton drops back to its start state instead of
//!   tracking every suffix of the word that happens to begin a phrase ("stand" in
//!   "understanding"). The walk stays in a few hot, shallow states, which is what makes a 10k
//!   phrase table (megabytes) scan at close to cache speed. Positions, depths and lengths count
//!   normalised bytes only, never markers.
//!
//! # What the stream does per chunk
//! 1. Runs of ASCII (the common case) are folded, whitespace-collapsed, marked and scanned in
//!    one loop over the original bytes, with no intermediate buffer. One lookup in a 3 x 128
//!    table (what the last normalised char was: other, space, word char; and the byte) gives the
//!    table column to step (a byte, "marker then byte", or "no move" for a collapsed space) and
//!    the next mode, so the loop has no branch but the match test. ASCII folds one byte to one
//!    byte, so the original char of a normalised byte is found again by walking back over the
//!    run, which only match states need. The mode carries a whitespace run and a word across
//!    chunks, so "kill " + " \n him" finds "kill him".
//! 2. Stretches with other chars are normalised one code point at a time ([`crate::normalize`])
//!    into a byte buffer (markers included) with the original char of every byte, then
//!    scanned the same way.
//! 3. Match states become matches: original offsets, and the trailing word boundary read from
//!    the next normalised char. A whole-word match that ends the chunk waits in `pending` until
//!    the next normalised char (or the end of the stream) decides it. Match starts before the
//!    chunk come from a small ring with the original char of the last normalised bytes.
//!
//! [`PhraseMatcher::find_all`] on a long text cuts it into [`LANES`] pieces scanned side by
//! side in one loop (one core): the walk is a chain of dependent table loads, and independent
//! chains let the CPU overlap their cache misses. How the pieces are stitched back is on
//! `find_all_lanes`; a stream chunk of [`STREAM_LANES_MIN_BYTES`] or more is read the same way
//! as two lanes (`Cursor::feed_two_lanes`), the stream going on with whichever lane holds the
//! true automaton state at the end.
//!
//! Matches are emitted sorted by `(end, start, phrase)`, and only once no undecided match could
//! still sort before them, so that the concatenation of all `feed` results plus `finish` equals
//! [`PhraseMatcher::find_all`].
//!
//! An earlier version also tried a second, anchored automaton walked from every word start (one
//! walk per word start in flight, ~1.6x slower than one unanchored scan); the markers get the
//! same effect inside the one automaton. See benches/RESULTS.md for the figures.
//!
//! # `pending`
//! Each automaton state is a trie node; its depth is the longest suffix of the normalised text
//! that is a prefix of some phrase. Depths are recorded at build time (walking each phrase
//! once), so `pending` (original chars that could still become part of a match) is one table
//! lookup plus one ring lookup.

mod automaton;

use std::sync::Arc;

use aho_corasick::{dfa, nfa, MatchKind, StartKind};

use self::automaton::{ascii_key, Dense, Nfa, Walk};
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

/// The word-start marker byte stepped before each word start (see the module docs).
const MARK: u8 = 0xFF;

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
    /// Normalised length in bytes (markers not counted).
    len: usize,
    /// Needs a non-word char (or the end of text) after it. (The start boundary is a marker
    /// in the compiled pattern.)
    need_end: bool,
}

#[derive(Debug)]
enum Engine {
    Dfa(Dense),
    Nfa(Box<Nfa>),
}

/// An immutable compiled phrase set. Share it (`Arc`) between any number of streams/threads.
#[derive(Debug)]
pub struct PhraseMatcher {
    normalizer: Normalizer,
    engine: Engine,
    phrases: Vec<PhraseInfo>,
    normalized: Vec<String>,
    max_len: usize,
    /// Whether any compiled pattern contains a marker (else the scan steps none).
    marks: bool,
    /// ASCII fold of every byte (bytes >= 0x80 never reach the ASCII loop).
    fold: [u8; 256],
    /// The ASCII scan's step for (mode, byte), mode being what the last normalised char was
    /// (0: other, 1: a space, 2: a word char): `column << 3 | counted << 2 | next mode`, where
    /// `counted` says the byte is a normalised byte (not a collapsed space).
    steps: Box<[u32; 1024]>,
}

/// Scan modes (see `PhraseMatcher::steps`).
const MODE_SPACE: u32 = 1;
const MODE_WORD: u32 = 2;

fn step_table<W: Walk>(aut: &W, fold: &[u8; 256], marks: bool) -> Box<[u32; 1024]> {
    let mut t = Box::new([0u32; 1024]);
    for mode in 0..3u32 {
        for b in 0..128usize {
            let n = fold[b];
            let sp = n == b' ';
            let collapsed = sp && mode == MODE_SPACE;
            let w = BYTE_WORD[n as usize];
            let word_start = marks && w && mode != MODE_WORD;
            let next = if sp {
                MODE_SPACE
            } else if w {
                MODE_WORD
            } else {
                0
            };
            let column = aut.ascii_column(ascii_key(n, word_start, collapsed));
            t[(mode as usize) << 8 | b] = column << 3 | u32::from(!collapsed) << 2 | next;
        }
    }
    t
}

/// Word chars among normalised bytes; [`MARK`] always precedes a word char.
const BYTE_WORD: [bool; 256] = {
    let mut t = [false; 256];
    let mut i = 0;
    while i < 128 {
        t[i] = (i as u8).is_ascii_alphanumeric();
        i += 1;
    }
    t[MARK as usize] = true;
    t
};

fn build_error(e: aho_corasick::BuildError) -> CoreError {
    CoreError::InvalidPattern(format!("the phrase set is too large to compile: {e}"))
}

/// The bytes the automaton is built from: the normalised phrase with a [`MARK`] before each
/// word start inside it, and before its first char when that needs a word boundary.
fn compile_pattern(normalized: &str, need_start: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(normalized.len() + 4);
    let mut prev_word: Option<bool> = None;
    for ch in normalized.chars() {
        let w = is_word_char(ch);
        let mark = match prev_word {
            None => need_start,
            Some(p) => w && !p,
        };
        if mark {
            out.push(MARK);
        }
        prev_word = Some(w);
        let mut buf = [0u8; 4];
        out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
    }
    out
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
        let mut patterns = Vec::with_capacity(phrases.len());
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
                need_end: ww && last,
            });
            patterns.push(compile_pattern(&n, ww && first));
            normalized.push(n);
        }

        let engine = if normalized.len() <= DFA_MAX_PHRASES {
            let aut = dfa::Builder::new()
                .match_kind(MatchKind::Standard)
                .start_kind(StartKind::Unanchored)
                .prefilter(false)
                .byte_classes(true)
                .build(&patterns)
                .map_err(build_error)?;
            Engine::Dfa(Dense::new(&aut, &patterns, MARK)?)
        } else {
            let aut = nfa::contiguous::Builder::new()
                .match_kind(MatchKind::Standard)
                .prefilter(false)
                .byte_classes(true)
                .build(&patterns)
                .map_err(build_error)?;
            Engine::Nfa(Box::new(Nfa::new(aut, &patterns, MARK)?))
        };
        let max_len = infos.iter().map(|p| p.len).max().unwrap_or(1);
        let marks = patterns.iter().any(|p| p.contains(&MARK));
        let table = normalizer.ascii_table();
        let mut fold = [0u8; 256];
        for (b, slot) in fold.iter_mut().enumerate().take(128) {
            *slot = table[b];
        }
        let steps = match &engine {
            Engine::Dfa(a) => step_table(a, &fold, marks),
            Engine::Nfa(a) => step_table(a.as_ref(), &fold, marks),
        };
        Ok(Self {
            steps,
            normalizer,
            engine,
            phrases: infos,
            normalized,
            max_len,
            marks,
            fold,
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
        let phrases = self
            .normalized
            .iter()
            .map(|s| s.capacity() + 24)
            .sum::<usize>()
            + self.phrases.capacity() * std::mem::size_of::<PhraseInfo>();
        aut + phrases
    }

    /// A new stream over this phrase set.
    pub fn stream(self: &Arc<Self>) -> MatchStream {
        MatchStream::new(Arc::clone(self))
    }

    /// All (overlapping) matches in `text`, sorted by `(end, start, phrase)`.
    pub fn find_all(&self, text: &str) -> Vec<Match> {
        if text.len() < LANES * LANE_MIN_BYTES {
            let mut cur = Cursor::new(self);
            let mut out = Vec::new();
            cur.feed_str(self, text);
            cur.finish(&mut out);
            return out;
        }
        match &self.engine {
            Engine::Dfa(a) => self.find_all_lanes(a, text),
            Engine::Nfa(a) => self.find_all_lanes(a.as_ref(), text),
        }
    }

    /// `find_all` for long texts: the text is cut into [`LANES`] pieces scanned side by side
    /// (interleaved in one loop, one core). Each piece's cursor starts fresh at its cut, so it
    /// finds exactly the matches that start in its piece or later; each cursor but the last
    /// then reads on past the next cut until no match starting before that cut can still end
    /// (its automaton depth no longer reaches back over the cut, no whole-word match waits),
    /// keeping only the matches that start before the cut.
    fn find_all_lanes<W: Walk>(&self, aut: &W, text: &str) -> Vec<Match> {
        let mut cuts = [text.len(); LANES + 1];
        cuts[0] = 0;
        for (l, cut) in cuts.iter_mut().enumerate().take(LANES).skip(1) {
            *cut = text.len() / LANES * l;
            while !text.is_char_boundary(*cut) {
                *cut -= 1;
            }
        }
        let mut curs: [Cursor; LANES] = std::array::from_fn(|_| Cursor::new(self));
        let mut chars_before = [0usize; LANES + 1];
        for l in 1..=LANES {
            let piece = &text[cuts[l - 1]..cuts[l]];
            let n = if piece.is_ascii() {
                piece.len()
            } else {
                piece.chars().count()
            };
            chars_before[l] = chars_before[l - 1] + n;
        }
        for l in 1..LANES {
            curs[l].char_pos = chars_before[l];
            if let Some(bits) = last_bits(self, &text[..cuts[l]]) {
                (curs[l].space, curs[l].word) = bits;
            }
        }
        let rests: [&str; LANES] = std::array::from_fn(|l| &text[cuts[l]..cuts[l + 1]]);
        Cursor::feed_lanes(self, aut, curs.each_mut(), rests);
        let mut out = Vec::new();
        let mut part = Vec::new();
        for (l, cur) in curs.iter_mut().enumerate() {
            if l + 1 < LANES {
                let cut_byte = cur.byte_pos;
                cur.read_on(self, aut, &text[cuts[l + 1]..], cut_byte);
                part.clear();
                cur.finish(&mut part);
                out.extend(part.iter().filter(|x| x.start < chars_before[l + 1]));
            } else {
                cur.finish(&mut out);
            }
        }
        out.sort_unstable();
        out
    }
}

/// `find_all` interleaves this many scans of one text (measured: 4 beats 2 and 1).
pub const LANES: usize = 4;
/// ... when each gets at least this many bytes (the stitching costs about a phrase's length).
pub const LANE_MIN_BYTES: usize = 16 << 10;

/// Per-stream state, kept apart from the shared matcher so the two can be borrowed separately.
#[derive(Debug, Clone)]
struct Cursor {
    state: u32,
    /// The last normalised byte was a space (a whitespace run may go on in the next chunk).
    space: bool,
    /// The last normalised char was a word char (no marker before the next one).
    word: bool,
    /// Normalised bytes consumed.
    byte_pos: usize,
    /// Original chars consumed.
    char_pos: usize,
    /// The original char of each of the last `mask + 1` normalised bytes.
    hist_orig: Box<[usize]>,
    mask: usize,
    /// Whole-word matches waiting for the next char; all end at the current position.
    pending: Vec<Match>,
    /// Decided matches not yet handed out (kept back while `pending` could sort before them).
    ready: Vec<Match>,
    /// Per-chunk scratch for non-ASCII chunks: normalised bytes with markers, the original char
    /// of each; match-state positions; one code point's fold.
    nbuf: Vec<u8>,
    norig: Vec<usize>,
    hits: Vec<(usize, u32)>,
    scratch: Vec<char>,
    pids: Vec<usize>,
}

/// Where the current chunk's normalised bytes came from, to map a match back.
#[derive(Clone, Copy)]
enum Src<'a> {
    /// An ASCII chunk scanned in place: byte `i` is char `i`; a byte is skipped (not a
    /// normalised byte) when it is a space folded right after a space. `space0`: the stream
    /// ended in a space before this chunk.
    Ascii {
        text: &'a [u8],
        fold: &'a [u8; 256],
        space0: bool,
    },
    /// A normalised buffer with markers and the original char of every byte.
    Buf { bytes: &'a [u8], orig: &'a [usize] },
}

impl Src<'_> {
    fn len(&self) -> usize {
        match self {
            Src::Ascii { text, .. } => text.len(),
            Src::Buf { bytes, .. } => bytes.len(),
        }
    }

    /// Whether position `j` holds a normalised byte (not a collapsed space, not a marker).
    #[inline]
    fn counts(&self, j: usize) -> bool {
        match *self {
            Src::Ascii { text, fold, space0 } => {
                let sp = |k: usize| fold[text[k] as usize] == b' ';
                !(sp(j) && if j > 0 { sp(j - 1) } else { space0 })
            }
            Src::Buf { bytes, .. } => bytes[j] != MARK,
        }
    }

    fn orig(&self, base_char: usize, j: usize) -> usize {
        match self {
            Src::Ascii { .. } => base_char + j,
            Src::Buf { orig, .. } => orig[j],
        }
    }

    /// Whether the normalised char at position `j` is a word char.
    fn word_at(&self, j: usize) -> bool {
        match *self {
            Src::Ascii { text, fold, .. } => BYTE_WORD[fold[text[j] as usize] as usize],
            Src::Buf { bytes, .. } => char_is_word_at(bytes, j),
        }
    }
}

/// A cursor's scan state in registers while an ASCII block goes through.
#[derive(Clone, Copy)]
struct Lane {
    sid: u32,
    /// See `PhraseMatcher::steps`.
    mode: u32,
    n_norm: usize,
}

impl Lane {
    #[inline(always)]
    fn of(cur: &Cursor) -> Self {
        let mode = if cur.space {
            MODE_SPACE
        } else if cur.word {
            MODE_WORD
        } else {
            0
        };
        Self {
            sid: cur.state,
            mode,
            n_norm: 0,
        }
    }

    /// Returns the number of normalised bytes scanned.
    #[inline(always)]
    fn store(&self, cur: &mut Cursor) -> usize {
        cur.state = self.sid;
        cur.space = self.mode == MODE_SPACE;
        cur.word = self.mode == MODE_WORD;
        self.n_norm
    }

    /// One original ASCII byte `b` (at `i` in its block): fold, collapse, marker and automaton
    /// step in one table lookup and one transition, no branch but the match test.
    #[inline(always)]
    fn step<W: Walk>(
        &mut self,
        m: &PhraseMatcher,
        aut: &W,
        b: u8,
        i: usize,
        hits: &mut Vec<(usize, u32)>,
    ) {
        let e = m.steps[((self.mode as usize) << 8 | b as usize) & 0x3ff];
        self.mode = e & 3;
        self.n_norm += ((e >> 2) & 1) as usize;
        self.sid = aut.next_column(self.sid, e >> 3);
        if aut.is_match(self.sid) {
            hits.push((i, self.sid));
        }
    }
}

impl Cursor {
    fn new(m: &PhraseMatcher) -> Self {
        // The ring must reach back to the start of the longest phrase.
        let cap = m.max_len.next_power_of_two().max(16);
        let state = match &m.engine {
            Engine::Dfa(a) => a.start(),
            Engine::Nfa(a) => a.start(),
        };
        Self {
            state,
            space: false,
            word: false,
            byte_pos: 0,
            char_pos: 0,
            hist_orig: vec![0usize; cap].into_boxed_slice(),
            mask: cap - 1,
            pending: Vec::new(),
            ready: Vec::new(),
            nbuf: Vec::new(),
            norig: Vec::new(),
            hits: Vec::new(),
            scratch: Vec::new(),
            pids: Vec::new(),
        }
    }

    /// Text goes through in blocks so the per-block buffers stay in cache: runs of ASCII
    /// through the in-place loop, the stretches around other chars through the buffer.
    fn feed_str(&mut self, m: &PhraseMatcher, text: &str) {
        if text.len() >= STREAM_LANES_MIN_BYTES {
            match &m.engine {
                Engine::Dfa(a) => self.feed_two_lanes(m, a, text),
                Engine::Nfa(a) => self.feed_two_lanes(m, a.as_ref(), text),
            }
            return;
        }
        let mut rest = text;
        while !rest.is_empty() {
            let (ascii, tail) = split_ascii(rest);
            let (other, tail) = split_other(tail);
            match &m.engine {
                Engine::Dfa(a) => self.feed_pieces(m, a, ascii, other),
                Engine::Nfa(a) => self.feed_pieces(m, a.as_ref(), ascii, other),
            }
            rest = tail;
        }
    }

    fn feed_pieces<W: Walk>(&mut self, m: &PhraseMatcher, aut: &W, ascii: &str, other: &str) {
        if !ascii.is_empty() {
            self.feed_ascii(m, aut, ascii.as_bytes());
        }
        if !other.is_empty() {
            self.feed_other(m, aut, other);
        }
    }

    /// Any text (an ASCII block or not).
    fn feed_block<W: Walk>(&mut self, m: &PhraseMatcher, aut: &W, text: &str) {
        let mut rest = text;
        while !rest.is_empty() {
            let (ascii, tail) = split_ascii(rest);
            let (other, tail) = split_other(tail);
            self.feed_pieces(m, aut, ascii, other);
            rest = tail;
        }
    }

    fn feed_ascii<W: Walk>(&mut self, m: &PhraseMatcher, aut: &W, bytes: &[u8]) {
        let mut hits = std::mem::take(&mut self.hits);
        hits.clear();
        let src = Src::Ascii {
            text: bytes,
            fold: &m.fold,
            space0: self.space,
        };
        if !self.pending.is_empty() && !bytes.is_empty() {
            self.resolve_pending(src.word_at(0));
        }
        let n_norm = self.scan_ascii(m, aut, bytes, &mut hits);
        self.finish_block(m, aut, src, &hits, n_norm, bytes.len());
        self.hits = hits;
    }

    /// Text with non-ASCII chars: normalised into a buffer first.
    fn feed_other<W: Walk>(&mut self, m: &PhraseMatcher, aut: &W, text: &str) {
        let mut hits = std::mem::take(&mut self.hits);
        hits.clear();
        let chars = self.normalize_chunk(m, text);
        let nbuf = std::mem::take(&mut self.nbuf);
        let norig = std::mem::take(&mut self.norig);
        let src = Src::Buf {
            bytes: &nbuf,
            orig: &norig,
        };
        if !self.pending.is_empty() && !nbuf.is_empty() {
            self.resolve_pending(src.word_at(0));
        }
        let mut sid = self.state;
        let mut marks = 0;
        for (k, &b) in nbuf.iter().enumerate() {
            sid = aut.next(sid, b);
            marks += usize::from(b == MARK);
            if aut.is_match(sid) {
                hits.push((k, sid));
            }
        }
        self.state = sid;
        self.finish_block(m, aut, src, &hits, nbuf.len() - marks, chars);
        self.nbuf = nbuf;
        self.norig = norig;
        self.hits = hits;
    }

    /// The hot loop for ASCII: fold, collapse, mark and step, one byte at a time. Returns the
    /// number of normalised bytes.
    #[inline(always)]
    fn scan_ascii<W: Walk>(
        &mut self,
        m: &PhraseMatcher,
        aut: &W,
        bytes: &[u8],
        hits: &mut Vec<(usize, u32)>,
    ) -> usize {
        let mut lane = Lane::of(self);
        for (i, &b) in bytes.iter().enumerate() {
            lane.step(m, aut, b, i, hits);
        }
        lane.store(self)
    }

    /// The scan of one ASCII block for each of `K` cursors, interleaved byte by byte: the lanes'
    /// automaton walks are independent chains of loads, so the CPU overlaps their cache misses.
    fn scan_lanes<W: Walk, const K: usize>(
        m: &PhraseMatcher,
        aut: &W,
        mut curs: [&mut Cursor; K],
        blocks: [&[u8]; K],
    ) {
        let space0: [bool; K] = std::array::from_fn(|l| curs[l].space);
        let mut hits: [Vec<(usize, u32)>; K] = std::array::from_fn(|l| {
            let cur = &mut curs[l];
            if !cur.pending.is_empty() && !blocks[l].is_empty() {
                let first = BYTE_WORD[m.fold[blocks[l][0] as usize] as usize];
                cur.resolve_pending(first);
            }
            let mut h = std::mem::take(&mut cur.hits);
            h.clear();
            h
        });
        let mut lanes: [Lane; K] = std::array::from_fn(|l| Lane::of(curs[l]));
        let common = blocks.iter().map(|b| b.len()).min().unwrap_or(0);
        // Lockstep over K blocks: byte i of every lane before byte i + 1 of any.
        #[allow(clippy::needless_range_loop)]
        for i in 0..common {
            for l in 0..K {
                lanes[l].step(m, aut, blocks[l][i], i, &mut hits[l]);
            }
        }
        for l in 0..K {
            for (i, &b) in blocks[l].iter().enumerate().skip(common) {
                lanes[l].step(m, aut, b, i, &mut hits[l]);
            }
            let cur = &mut curs[l];
            let n_norm = lanes[l].store(cur);
            let src = Src::Ascii {
                text: blocks[l],
                fold: &m.fold,
                space0: space0[l],
            };
            cur.finish_block(m, aut, src, &hits[l], n_norm, blocks[l].len());
            cur.hits = std::mem::take(&mut hits[l]);
        }
    }

    /// Scans `rests[l]` with cursor `l`, the ASCII runs of all lanes in lockstep.
    fn feed_lanes<W: Walk, const K: usize>(
        m: &PhraseMatcher,
        aut: &W,
        mut curs: [&mut Cursor; K],
        mut rests: [&str; K],
    ) {
        loop {
            let blocks: [&[u8]; K] = std::array::from_fn(|l| {
                // A lane whose text goes on with non-ASCII chars reads them on its own first.
                let (mut ascii, mut tail) = split_ascii(rests[l]);
                while ascii.is_empty() && !tail.is_empty() {
                    let (other, t) = split_other(tail);
                    curs[l].feed_other(m, aut, other);
                    (ascii, tail) = split_ascii(t);
                }
                rests[l] = tail;
                ascii.as_bytes()
            });
            if blocks.iter().all(|b| b.is_empty()) {
                break;
            }
            let lanes: [&mut Cursor; K] = curs.each_mut().map(|c| &mut **c);
            Cursor::scan_lanes(m, aut, lanes, blocks);
        }
    }

    /// Reads on into `rest` (the text after a cut that another lane scanned from a fresh
    /// start) until nothing this cursor holds can start before the cut: its automaton depth no
    /// longer reaches back over it (`cut_byte`: the normalised position of the cut) and no
    /// whole-word match waits. Returns whether it got there before the end of `rest`.
    fn read_on<W: Walk>(
        &mut self,
        m: &PhraseMatcher,
        aut: &W,
        rest: &str,
        cut_byte: usize,
    ) -> bool {
        let mut rest = rest;
        loop {
            let done = self.pending.is_empty()
                && aut.depth(self.state).min(m.max_len) <= self.byte_pos - cut_byte;
            if done || rest.is_empty() {
                return done && !rest.is_empty();
            }
            let mut cut = rest.len().min(64);
            while !rest.is_char_boundary(cut) {
                cut += 1;
            }
            let (head, tail) = rest.split_at(cut);
            self.feed_block(m, aut, head);
            rest = tail;
        }
    }

    /// A long chunk of a stream as two lanes: this cursor reads the first half while a fresh
    /// one reads the second; this one then reads on past the cut (see [`Cursor::read_on`]).
    /// If it stops before the end, the fresh cursor holds the true state from there on and the
    /// stream continues as that one (its ring covers every later look-back, which can no longer
    /// reach over the cut); otherwise this cursor has read everything and the other is dropped.
    fn feed_two_lanes<W: Walk>(&mut self, m: &PhraseMatcher, aut: &W, text: &str) {
        let mut cut = text.len() / 2;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        let (head, tail) = text.split_at(cut);
        let mut other = Cursor::new(m);
        other.char_pos = self.char_pos
            + if head.is_ascii() {
                head.len()
            } else {
                head.chars().count()
            };
        (other.space, other.word) = last_bits(m, head).unwrap_or((self.space, self.word));
        let cut_char = other.char_pos;
        Cursor::feed_lanes(m, aut, [&mut *self, &mut other], [head, tail]);
        let cut_byte = self.byte_pos;
        if !self.read_on(m, aut, tail, cut_byte) {
            return;
        }
        self.ready.retain(|x| x.start < cut_char);
        self.ready.append(&mut other.ready);
        self.pending = other.pending;
        (self.state, self.space, self.word) = (other.state, other.space, other.word);
        (self.byte_pos, self.char_pos) = (other.byte_pos, other.char_pos);
        self.hist_orig = other.hist_orig;
    }

    /// Step 3 and the ring update for one scanned block; then advances the positions.
    fn finish_block<W: Walk>(
        &mut self,
        m: &PhraseMatcher,
        aut: &W,
        src: Src<'_>,
        hits: &[(usize, u32)],
        n_norm: usize,
        chars: usize,
    ) {
        for &(k, sid) in hits {
            self.collect(m, aut, src, k, sid);
        }
        // Ring: the original char of the last normalised bytes, walking back from the end.
        let keep = n_norm.min(self.mask + 1);
        if matches!(src, Src::Ascii { .. }) && n_norm == src.len() {
            // Nothing collapsed: normalised byte j is original char j.
            for j in n_norm - keep..n_norm {
                self.hist_orig[(self.byte_pos + j) & self.mask] = self.char_pos + j;
            }
            self.byte_pos += n_norm;
            self.char_pos += chars;
            return;
        }
        let mut pos = self.byte_pos + n_norm;
        let mut j = src.len();
        let mut written = 0;
        while written < keep {
            j -= 1;
            if src.counts(j) {
                pos -= 1;
                self.hist_orig[pos & self.mask] = src.orig(self.char_pos, j);
                written += 1;
            }
        }
        self.byte_pos += n_norm;
        self.char_pos += chars;
    }

    /// Step 1 for a non-ASCII chunk: normalised bytes with markers, and their original chars.
    /// Returns the number of original chars.
    fn normalize_chunk(&mut self, m: &PhraseMatcher, text: &str) -> usize {
        self.nbuf.clear();
        self.norig.clear();
        let mut scratch = std::mem::take(&mut self.scratch);
        let mut n = 0;
        for c in text.chars() {
            let orig = self.char_pos + n;
            n += 1;
            if c.is_ascii() {
                let n = m.fold[c as usize];
                self.push_char(m, n as char, BYTE_WORD[n as usize], orig);
                continue;
            }
            if let Some((chars, word)) = m.normalizer.cached_chars(c) {
                for (k, &nc) in chars.iter().enumerate() {
                    self.push_char(m, nc, word >> k & 1 != 0, orig);
                }
                continue;
            }
            scratch.clear();
            m.normalizer.fold_uncached(c, &mut scratch);
            for &nc in &scratch {
                self.push_char(m, nc, is_word_char(nc), orig);
            }
        }
        self.scratch = scratch;
        n
    }

    /// Appends one normalised char (`w`: a word char): left out when it is a space right after
    /// a space, preceded by a marker when it starts a word.
    #[inline]
    fn push_char(&mut self, m: &PhraseMatcher, c: char, w: bool, orig: usize) {
        let sp = c == ' ';
        if sp && self.space {
            return;
        }
        self.space = sp;
        if m.marks && w && !self.word {
            self.nbuf.push(MARK);
            self.norig.push(orig);
        }
        self.word = w;
        let mut buf = [0u8; 4];
        for &b in c.encode_utf8(&mut buf).as_bytes() {
            self.nbuf.push(b);
            self.norig.push(orig);
        }
    }

    #[cold]
    fn collect<W: Walk>(&mut self, m: &PhraseMatcher, aut: &W, src: Src<'_>, k: usize, sid: u32) {
        let end = src.orig(self.char_pos, k) + 1;
        let next_word = (k + 1 < src.len()).then(|| src.word_at(k + 1));
        let mut pids = std::mem::take(&mut self.pids);
        pids.clear();
        aut.for_each_match(sid, |pid| pids.push(pid));
        for &pid in &pids {
            let info = m.phrases[pid];
            let found = Match {
                end,
                start: self.start_of(src, k, info.len),
                phrase: pid,
            };
            match (info.need_end, next_word) {
                (false, _) | (true, Some(false)) => self.ready.push(found),
                (true, None) => self.pending.push(found),
                (true, Some(true)) => {}
            }
        }
        self.pids = pids;
    }

    /// The original char of the first of the `len` normalised bytes that end at position `k`.
    fn start_of(&self, src: Src<'_>, k: usize, len: usize) -> usize {
        let (mut j, mut count) = (k, 1);
        while count < len {
            if j == 0 {
                return self.hist_orig[(self.byte_pos - (len - count)) & self.mask];
            }
            j -= 1;
            count += usize::from(src.counts(j));
        }
        src.orig(self.char_pos, j)
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
        let depth = match &m.engine {
            Engine::Dfa(a) => a.depth(self.state),
            Engine::Nfa(a) => a.depth(self.state),
        }
        .min(m.max_len)
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

/// Whether the normalised char starting at `bytes[k]` is a word char (a marker announces one).
#[inline]
fn char_is_word_at(bytes: &[u8], k: usize) -> bool {
    let b = bytes[k];
    if b < 0x80 || b == MARK {
        return BYTE_WORD[b as usize];
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

/// The space and word bits of the last normalised char of `text` (`None`: it has none).
fn last_bits(m: &PhraseMatcher, text: &str) -> Option<(bool, bool)> {
    let mut fold = Vec::new();
    for c in text.chars().rev() {
        fold.clear();
        m.normalizer.fold_char(c, &mut fold);
        if let Some(&last) = fold.last() {
            return Some((last == ' ', is_word_char(last)));
        }
    }
    None
}

/// Stream chunks at least this long are read as two lanes (`Cursor::feed_two_lanes`).
pub const STREAM_LANES_MIN_BYTES: usize = 2 << 10;

/// Blocks are at most this many bytes.
const BLOCK: usize = 8 << 10;
/// A run of this many ASCII bytes ends a stretch of text that goes through the buffer.
const ASCII_RUN: usize = 32;

/// The ASCII prefix of `s` (at most [`BLOCK`] bytes) and the rest.
fn split_ascii(s: &str) -> (&str, &str) {
    let b = s.as_bytes();
    let n = b[..b.len().min(BLOCK)]
        .iter()
        .position(|&x| x >= 0x80)
        .unwrap_or(b.len().min(BLOCK));
    s.split_at(n)
}

/// The stretch of `s` up to the next run of [`ASCII_RUN`] ASCII bytes (at most about [`BLOCK`]
/// bytes, cut at a char boundary) and the rest.
fn split_other(s: &str) -> (&str, &str) {
    let b = s.as_bytes();
    let (mut run, mut end) = (0, b.len());
    for (i, &x) in b.iter().enumerate() {
        if x < 0x80 {
            run += 1;
            if run == ASCII_RUN {
                end = i + 1 - ASCII_RUN;
                break;
            }
        } else {
            run = 0;
            if i >= BLOCK && s.is_char_boundary(i) {
                end = i;
                break;
            }
        }
    }
    s.split_at(end)
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
    fn long_texts_scanned_in_lanes_agree_with_one_stream() {
        // find_all cuts texts of LANES * LANE_MIN_BYTES or more into lanes; a stream never does.
        let phrases = [
            "kill him", "ab", "b c", "é x", "bomb", "x", "a b c", "-b", "ill h", "cc",
        ];
        let ww = [
            true, true, false, true, true, true, true, true, false, false,
        ];
        let m = Arc::new(PhraseMatcher::new(&phrases, WholeWord::PerPhrase(&ww), false).unwrap());
        let pieces = [
            "kill",
            "him",
            "ab",
            "b",
            "c",
            "é",
            "x",
            "bomb",
            "a",
            "-",
            "cc",
            " ",
            "  ",
            "\n\t ",
            "\u{a0}",
            "\u{200b}",
            "K\u{456}LL",
            ", ",
            "xyz",
            "\u{3000}",
        ];
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        for round in 0..6 {
            let mut text = String::new();
            let target = LANES * LANE_MIN_BYTES + round * 7919;
            while text.len() < target {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                let piece = pieces[(seed % pieces.len() as u64) as usize];
                // Mostly ASCII, with stretches of the non-ASCII pieces in some rounds.
                if round % 2 == 0 && !piece.is_ascii() && seed % 7 != 0 {
                    continue;
                }
                text.push_str(piece);
            }
            let whole = m.find_all(&text);
            let mut s = m.stream();
            let mut got = Vec::new();
            let mut rest = text.as_str();
            while !rest.is_empty() {
                seed = seed.rotate_left(9) ^ 0x9e37_79b9_7f4a_7c15;
                let mut cut = rest.len().min(1 + (seed as usize >> 3) % 5000);
                while !rest.is_char_boundary(cut) {
                    cut += 1;
                }
                got.extend(s.feed(&rest[..cut]).unwrap());
                rest = &rest[cut..];
                // Nothing still to come may start before the pending suffix.
                let held = s.position() - s.pending();
                assert!(
                    whole[got.len()..].iter().all(|x| x.start >= held),
                    "round {round}"
                );
            }
            got.extend(s.finish().unwrap());
            assert!(whole.len() > 1000, "round {round}: {}", whole.len());
            assert_eq!(whole, got, "round {round}");
            // Chunks below STREAM_LANES_MIN_BYTES: one lane all the way.
            let mut s = m.stream();
            let mut one = Vec::new();
            let mut rest = text.as_str();
            while !rest.is_empty() {
                let mut cut = rest.len().min(997);
                while !rest.is_char_boundary(cut) {
                    cut += 1;
                }
                one.extend(s.feed(&rest[..cut]).unwrap());
                rest = &rest[cut..];
            }
            one.extend(s.finish().unwrap());
            assert_eq!(whole, one, "round {round}");
        }
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
        // Long texts (lanes, two-lane stream chunks) through the NFA, whitespace runs included.
        let long = "w7x  w99x\n\tw100x w12 éw5x ".repeat(LANES * LANE_MIN_BYTES / 20);
        let big = Arc::new(big);
        let whole = big.find_all(&long);
        let mut s = big.stream();
        let mut one = Vec::new();
        for piece in long.as_bytes().chunks(500) {
            one.extend(s.feed_bytes(piece).unwrap());
        }
        one.extend(s.finish().unwrap());
        assert_eq!(whole, one);
        // w7x, w99x, w100x; not w5x inside the word "éw5x".
        assert_eq!(whole.len(), 3 * (LANES * LANE_MIN_BYTES / 20));
    }
}
