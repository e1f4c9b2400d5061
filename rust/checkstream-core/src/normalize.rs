//! Canonical form of text for matching, with a map back to the original.
//!
//! Every original code point is folded on its own, independently of its neighbours, so that
//! cutting a stream into chunks anywhere can never change the result (streamed == whole text);
//! the one piece of context is a single bit for step 6 (did the output so far end in a space).
//! The fold of one code point, in order:
//!
//! 1. compatibility decomposition (NFKD: full-width, ligatures, super/subscripts, ...),
//! 2. lower-casing (`char::to_lowercase`, decomposed again: `İ` lowers to `i` + a mark),
//! 3. dropping combining marks (`M*`) and format characters (`Cf`: zero-width joiners, BOM, ...),
//! 4. the UTS #39 confusable skeleton (`unicode-security`'s packaged `confusables.txt` data), applied
//!    to non-ASCII characters only: ASCII is already the skeleton's target alphabet, and its own
//!    ASCII rules (`m` -> `rn`, `1` -> `l`, `0` -> `O`) would make "modem" match "modern",
//!    a false-positive class a guardrail cannot afford (leetspeak covers digits instead),
//! 5. optional leetspeak (`4`->`a`, `3`->`e`, `0`->`o`, `$`->`s`, ...), then ASCII lower-casing,
//! 6. every whitespace character (Unicode `White_Space`: NBSP, tabs, newlines, ...) becomes an
//!    ASCII space, and a run of spaces in the output (even with dropped characters in between, as
//!    in `" \u{200b} "`) collapses into one: "kill \u{a0}\n him" reads as "kill him". The
//!    collapsed space maps back to the first character of its run, so a match that crosses it
//!    covers the whole original run.
//!
//! ASCII goes through a 128-entry table (one byte in, one byte out). Other code points of the
//! Basic Multilingual Plane are folded once per process, a 256-code-point page at a time on first
//! use, and then read from that cache: the pipeline above costs about 250 ns per code point,
//! which would cap Cyrillic or CJK text near 10 MB/s. Astral code points take the slow path.

use std::sync::OnceLock;

use unicode_normalization::char::{decompose_compatible, is_combining_mark};
use unicode_properties::{GeneralCategory, UnicodeGeneralCategory};
use unicode_security::skeleton;

/// Leetspeak substitutions. `!` and `|` are left out on purpose: `kill!` must still end a word.
const LEET: &[(u8, u8)] = &[
    (b'0', b'o'),
    (b'1', b'i'),
    (b'3', b'e'),
    (b'4', b'a'),
    (b'5', b's'),
    (b'7', b't'),
    (b'8', b'b'),
    (b'9', b'g'),
    (b'@', b'a'),
    (b'$', b's'),
];

const fn ascii_table(leet: bool) -> [u8; 128] {
    let mut t = [0u8; 128];
    let mut i = 0;
    while i < 128 {
        let b = i as u8;
        t[i] = match b {
            b'A'..=b'Z' => b + 32,
            b'\t' | b'\n' | b'\x0b' | b'\x0c' | b'\r' => b' ',
            _ => b,
        };
        i += 1;
    }
    if leet {
        let mut j = 0;
        while j < LEET.len() {
            t[LEET[j].0 as usize] = LEET[j].1;
            j += 1;
        }
    }
    t
}

static ASCII_PLAIN: [u8; 128] = ascii_table(false);
static ASCII_LEET: [u8; 128] = ascii_table(true);

/// The fold of one BMP code point, when it is at most `FOLD_MAX` chars long.
#[derive(Debug, Clone, Copy)]
struct Fold {
    /// `u8::MAX`: not cached (longer fold, or a surrogate); use the slow path.
    len: u8,
    chars: [char; FOLD_MAX],
    /// Bit `i`: `chars[i]` is a word char ([`is_word_char`]).
    word: u8,
    /// The same chars as UTF-8, for callers that work on bytes.
    utf8_len: u8,
    utf8: [u8; 4 * FOLD_MAX],
}

const FOLD_MAX: usize = 3;

/// Lazily filled per-page cache of BMP folds (one per leetspeak setting).
struct FoldCache {
    pages: [OnceLock<Box<[Fold]>>; 256],
}

impl FoldCache {
    const fn new() -> Self {
        Self {
            pages: [const { OnceLock::new() }; 256],
        }
    }
}

static CACHE_PLAIN: FoldCache = FoldCache::new();
static CACHE_LEET: FoldCache = FoldCache::new();

/// Word characters for whole-word matching: Unicode alphanumerics.
#[inline]
pub fn is_word_char(c: char) -> bool {
    if c.is_ascii() {
        c.is_ascii_alphanumeric()
    } else {
        c.is_alphanumeric()
    }
}

#[inline]
fn is_dropped(c: char) -> bool {
    is_combining_mark(c)
        || matches!(
            c.general_category(),
            GeneralCategory::Format
                | GeneralCategory::NonspacingMark
                | GeneralCategory::SpacingMark
                | GeneralCategory::EnclosingMark
        )
}

/// The per-code-point text fold described in the module docs. Cheap to copy, immutable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Normalizer {
    leetspeak: bool,
}

impl Normalizer {
    pub fn new(leetspeak: bool) -> Self {
        Self { leetspeak }
    }

    pub fn leetspeak(&self) -> bool {
        self.leetspeak
    }

    /// The fold table for ASCII bytes (every ASCII byte maps to exactly one ASCII byte).
    #[inline]
    pub fn ascii_table(&self) -> &'static [u8; 128] {
        if self.leetspeak {
            &ASCII_LEET
        } else {
            &ASCII_PLAIN
        }
    }

    /// Appends the fold of one code point to `out` (possibly nothing, possibly several chars).
    #[inline]
    pub fn fold_char(&self, c: char, out: &mut Vec<char>) {
        if c.is_ascii() {
            out.push(self.ascii_table()[c as usize] as char);
        } else {
            self.fold_non_ascii(c, out);
        }
    }

    /// One non-ASCII code point: from the page cache for the BMP, else computed.
    #[inline]
    pub fn fold_non_ascii(&self, c: char, out: &mut Vec<char>) {
        match self.cached(c) {
            Some(f) => out.extend_from_slice(&f.chars[..f.len as usize]),
            None => self.fold_uncached(c, out),
        }
    }

    /// The fold of a non-ASCII `c` and which of its chars are word chars (bit `i` for char
    /// `i`), when the page cache holds it (BMP code points whose fold is at most three chars:
    /// all but a handful).
    #[inline]
    pub fn cached_chars(&self, c: char) -> Option<(&'static [char], u8)> {
        self.cached(c).map(|f| (&f.chars[..f.len as usize], f.word))
    }

    /// The fold of a non-ASCII `c` as UTF-8, when the page cache holds it (BMP code points
    /// whose fold is at most three chars: all but a handful).
    #[inline]
    pub fn cached_utf8(&self, c: char) -> Option<&'static [u8]> {
        self.cached(c).map(|f| &f.utf8[..f.utf8_len as usize])
    }

    #[inline]
    fn cached(&self, c: char) -> Option<&'static Fold> {
        let cp = c as u32;
        if cp >= 0x1_0000 {
            return None;
        }
        let cache = if self.leetspeak {
            &CACHE_LEET
        } else {
            &CACHE_PLAIN
        };
        let page = cache.pages[(cp >> 8) as usize].get_or_init(|| self.fold_page(cp >> 8));
        let f = &page[(cp & 0xff) as usize];
        (f.len != u8::MAX).then_some(f)
    }

    fn fold_page(&self, page: u32) -> Box<[Fold]> {
        let mut tmp = Vec::new();
        (0..256u32)
            .map(|low| {
                let mut f = Fold {
                    len: u8::MAX,
                    word: 0,
                    chars: ['\0'; FOLD_MAX],
                    utf8_len: 0,
                    utf8: [0; 4 * FOLD_MAX],
                };
                if let Some(c) = char::from_u32(page << 8 | low) {
                    tmp.clear();
                    if c.is_ascii() {
                        self.fold_char(c, &mut tmp);
                    } else {
                        self.fold_uncached(c, &mut tmp);
                    }
                    if tmp.len() <= FOLD_MAX {
                        f.len = tmp.len() as u8;
                        f.chars[..tmp.len()].copy_from_slice(&tmp);
                        let mut n = 0;
                        for ch in &tmp {
                            n += ch.encode_utf8(&mut f.utf8[n..]).len();
                        }
                        f.utf8_len = n as u8;
                        for (k, ch) in tmp.iter().enumerate() {
                            f.word |= u8::from(is_word_char(*ch)) << k;
                        }
                    }
                }
                f
            })
            .collect()
    }

    /// The fold pipeline itself, for one non-ASCII code point.
    pub fn fold_uncached(&self, c: char, out: &mut Vec<char>) {
        let table = self.ascii_table();
        decompose_compatible(c, |d| {
            if is_dropped(d) {
                return;
            }
            if d.is_ascii() {
                out.push(table[d as usize] as char);
                return;
            }
            if d.is_whitespace() {
                out.push(' ');
                return;
            }
            // The skeleton of the character as written first: capitals such as Greek `Κ` or
            // Cyrillic `Н` are confusable with Latin capitals, their lower cases often not.
            if self.push_ascii_prototype(d, table, out) {
                return;
            }
            for l in d.to_lowercase() {
                decompose_compatible(l, |e| self.fold_lowered(e, table, out));
            }
        });
    }

    fn fold_lowered(&self, e: char, table: &[u8; 128], out: &mut Vec<char>) {
        if is_dropped(e) {
            return;
        }
        if e.is_ascii() {
            out.push(table[e as usize] as char);
            return;
        }
        if self.push_ascii_prototype(e, table, out) {
            return;
        }
        let mut buf = [0u8; 4];
        for p in skeleton(e.encode_utf8(&mut buf)) {
            if is_dropped(p) {
                continue;
            }
            if p.is_ascii() {
                out.push(table[p as usize] as char);
            } else if p.is_whitespace() {
                out.push(' ');
            } else {
                out.extend(p.to_lowercase().filter(|x| !is_dropped(*x)));
            }
        }
    }

    /// Pushes the folded skeleton of `c` when that skeleton is plain ASCII; false otherwise.
    fn push_ascii_prototype(&self, c: char, table: &[u8; 128], out: &mut Vec<char>) -> bool {
        let mut buf = [0u8; 4];
        let mut proto = [0u8; 8];
        let mut n = 0usize;
        for p in skeleton(c.encode_utf8(&mut buf)) {
            if !p.is_ascii() || n == proto.len() {
                return false;
            }
            proto[n] = p as u8;
            n += 1;
        }
        match &proto[..n] {
            [] => return false,
            // confusables.txt writes m-like characters as "rn"; we keep `m` (see module docs).
            b"rn" => out.push('m'),
            // ... and capital-I-like ones (Cyrillic `І`, Greek `Ι`, `Ⅰ`) as `l`, as it does `I`.
            b"l" if c.is_uppercase() => out.push('i'),
            bytes => out.extend(bytes.iter().map(|&b| table[b as usize] as char)),
        }
        true
    }

    /// The canonical form of `text`.
    pub fn normalize(&self, text: &str) -> String {
        let table = self.ascii_table();
        let bytes = text.as_bytes();
        let mut out = Vec::with_capacity(text.len());
        let mut space = false;
        let mut scratch = Vec::new();
        let mut i = 0;
        while i < bytes.len() {
            // A run of ASCII: one byte in, at most one byte out (fold, collapse).
            let run = bytes[i..]
                .iter()
                .position(|&b| b >= 0x80)
                .unwrap_or(bytes.len() - i);
            let at = out.len();
            out.resize(at + run, 0);
            let mut w = at;
            for &b in &bytes[i..i + run] {
                // Branch-free: always write, advance unless this is a collapsed space.
                let n = table[b as usize];
                let sp = n == b' ';
                out[w] = n;
                w += usize::from(!(sp & space));
                space = sp;
            }
            out.truncate(w);
            i += run;
            if i == bytes.len() {
                break;
            }
            let c = text[i..].chars().next().unwrap_or_default();
            i += c.len_utf8();
            let folded = match self.cached(c) {
                Some(f) => &f.chars[..f.len as usize],
                None => {
                    scratch.clear();
                    self.fold_uncached(c, &mut scratch);
                    &scratch[..]
                }
            };
            for &ch in folded {
                let sp = ch == ' ';
                if !(sp && space) {
                    let mut buf = [0u8; 4];
                    out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
                }
                space = sp;
            }
        }
        String::from_utf8(out).expect("folds are whole chars")
    }

    /// The canonical form and, for every char of it, the index (in chars) of the original
    /// code point it came from (for a collapsed whitespace run: its first character).
    pub fn normalize_with_offsets(&self, text: &str) -> (String, Vec<usize>) {
        let mut out = String::with_capacity(text.len());
        let mut offsets = Vec::with_capacity(text.len());
        let table = self.ascii_table();
        let mut scratch = Vec::new();
        let mut space = false;
        for (i, c) in text.chars().enumerate() {
            if c.is_ascii() {
                if push_collapsed(&mut out, table[c as usize] as char, &mut space) {
                    offsets.push(i);
                }
            } else {
                scratch.clear();
                self.fold_non_ascii(c, &mut scratch);
                for &ch in &scratch {
                    if push_collapsed(&mut out, ch, &mut space) {
                        offsets.push(i);
                    }
                }
            }
        }
        (out, offsets)
    }
}

/// Appends `c` unless it is a space right after a space; `space` carries that one bit of state
/// (across chunks, for streams). Returns whether `c` was appended.
#[inline]
fn push_collapsed(out: &mut String, c: char, space: &mut bool) -> bool {
    let is_space = c == ' ';
    if is_space && *space {
        return false;
    }
    *space = is_space;
    out.push(c);
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(s: &str) -> String {
        Normalizer::new(false).normalize(s)
    }

    #[test]
    fn folds_case_width_and_invisible_characters() {
        assert_eq!(n("HeLLo"), "hello");
        assert_eq!(n("ｋｉｌｌ"), "kill");
        assert_eq!(n("k\u{200d}i\u{200b}ll"), "kill");
        assert_eq!(n("\u{feff}kill"), "kill");
        assert_eq!(n("café"), "cafe");
        assert_eq!(n("cafe\u{301}"), "cafe");
        assert_eq!(n("a\u{a0}b\tc"), "a b c");
    }

    #[test]
    fn whitespace_runs_collapse_to_one_space() {
        assert_eq!(n("kill  him"), "kill him");
        assert_eq!(n("kill\u{a0}\nhim"), "kill him");
        assert_eq!(n("kill \t him"), "kill him");
        assert_eq!(n("kill \u{200b}\u{301} \u{3000}him"), "kill him");
        assert_eq!(n("  a  "), " a ");
        let (s, o) = Normalizer::new(false).normalize_with_offsets("a \u{200b}\r\n b");
        assert_eq!(s, "a b");
        assert_eq!(o, vec![0, 1, 6]);
    }

    #[test]
    fn every_white_space_character_folds_to_a_space() {
        for leet in [false, true] {
            let nz = Normalizer::new(leet);
            for c in (0u32..0x11_0000).filter_map(char::from_u32) {
                if c.is_whitespace() {
                    assert_eq!(nz.normalize(&c.to_string()), " ", "U+{:04X}", c as u32);
                }
            }
        }
    }

    #[test]
    fn folds_homoglyphs_to_latin() {
        // Cyrillic а, о, е and Greek ο.
        assert_eq!(n("b\u{430}d w\u{43e}rd"), "bad word");
        assert_eq!(n("h\u{435}ll\u{3bf}"), "hello");
        assert_eq!(n("ΚΙLL"), n("kill"));
    }

    #[test]
    fn keeps_ascii_letters_apart() {
        assert_eq!(n("modem"), "modem");
        assert_eq!(n("modern"), "modern");
        assert_eq!(n("k1ll"), "k1ll");
    }

    #[test]
    fn leetspeak_is_optional() {
        let leet = Normalizer::new(true);
        assert_eq!(leet.normalize("k1ll 4ll h3r0$"), "kill all heros");
        assert_eq!(leet.normalize("kill!"), "kill!");
        assert_eq!(leet.normalize("ｋ１ｌｌ"), "kill");
    }

    #[test]
    fn offsets_point_at_the_source_char() {
        let (s, o) = Normalizer::new(false).normalize_with_offsets("ﬁ\u{200b}X");
        assert_eq!(s, "fix");
        assert_eq!(o, vec![0, 0, 2]);
    }

    #[test]
    fn the_page_cache_agrees_with_the_pipeline_on_the_whole_bmp() {
        for leet in [false, true] {
            let nz = Normalizer::new(leet);
            let (mut a, mut b) = (Vec::new(), Vec::new());
            for c in (0x80u32..0x1_0000).filter_map(char::from_u32) {
                a.clear();
                b.clear();
                nz.fold_non_ascii(c, &mut a);
                nz.fold_uncached(c, &mut b);
                assert_eq!(a, b, "U+{:04X}", c as u32);
                if let Some(bytes) = nz.cached_utf8(c) {
                    assert_eq!(bytes, b.iter().collect::<String>().as_bytes());
                }
                if let Some((chars, word)) = nz.cached_chars(c) {
                    for (k, ch) in chars.iter().enumerate() {
                        assert_eq!(word >> k & 1 != 0, is_word_char(*ch), "U+{:04X}", c as u32);
                    }
                }
            }
        }
    }

    #[test]
    fn is_idempotent_on_samples() {
        let nz = Normalizer::new(true);
        for s in [
            "Ⅻ ﬃ ß İstanbul ǅ ㎒ ½ 𝐀𝐁 Ωmega",
            "ＡＢＣ１２３",
            "\u{430}\u{43e}\u{435}",
        ] {
            let once = nz.normalize(s);
            assert_eq!(nz.normalize(&once), once, "{s}");
        }
    }
}
