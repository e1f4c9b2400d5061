//! The automaton the streams walk, behind one small trait ([`Walk`]) with `u32` state ids.
//!
//! Up to [`super::DFA_MAX_PHRASES`] phrases we build the `aho-corasick` crate's DFA and copy it
//! into our own table ([`Dense`]), then drop the crate's copy. The copy is laid out for the scan:
//! - states are numbered breadth-first from the start state, so the shallow states that ordinary
//!   text keeps visiting sit together in a few pages at the front of the table (the crate numbers
//!   them in pattern-insertion order, spread over the whole table: more cache and TLB misses);
//! - match states come last, so "is this a match state" is one compare with the state id;
//! - byte classes are ours: one class per byte that occurs in some pattern, one for all others;
//! - depths (for `pending`) and match lists live in flat arrays indexed by state.
//!
//! Above that many phrases the crate's contiguous NFA is walked through the crate's trait.

use aho_corasick::automaton::{Automaton, StateID};
use aho_corasick::nfa::contiguous::NFA;
use aho_corasick::Anchored;
use rustc_hash::FxHashMap;

use crate::CoreError;

/// What the cursor needs from an automaton. State ids are opaque `u32`s.
pub(super) trait Walk {
    fn start(&self) -> u32;
    fn next(&self, sid: u32, byte: u8) -> u32;
    /// The column (an opaque number below 2^24) for one ASCII scan step [`ascii_key`]`(n,
    /// word_start, collapsed)`: the marker (when `word_start`) and `n` in one transition, or no
    /// move at all (when `collapsed`).
    fn ascii_column(&self, key: usize) -> u32;
    /// One ASCII scan step by its column.
    fn next_column(&self, sid: u32, column: u32) -> u32;
    fn is_match(&self, sid: u32) -> bool;
    /// Calls `f` with every pattern that ends at match state `sid`.
    fn for_each_match(&self, sid: u32, f: impl FnMut(usize));
    /// Normalised bytes (marker bytes not counted) of the longest text suffix that is a prefix
    /// of some pattern, in state `sid`.
    fn depth(&self, sid: u32) -> usize;
}

/// Packs an ASCII scan step: normalised byte `n`, whether a marker goes before it, whether it
/// is a collapsed space (no step).
#[inline(always)]
pub(super) fn ascii_key(n: u8, word_start: bool, collapsed: bool) -> usize {
    (n as usize & 0x7f) | usize::from(word_start) << 7 | usize::from(collapsed) << 8
}

fn start_of<A: Automaton>(aut: &A) -> Result<StateID, CoreError> {
    aut.start_state(Anchored::No)
        .map_err(|e| CoreError::InvalidPattern(format!("automaton has no start state: {e}")))
}

/// A dense transition table with premultiplied state ids (`index * stride`); start is 0.
///
/// Besides one column per byte class it has, for the ASCII scan, one column per ASCII word byte
/// of the patterns for "a marker, then this byte" (so a word start costs one lookup and no
/// branch) and one identity column (a collapsed space: no move, and no branch either).
#[derive(Debug)]
pub(super) struct Dense {
    classes: Box<[u32; 256]>,
    /// Column of each [`ascii_key`].
    ascii: Box<[u32; 512]>,
    stride: usize,
    trans: Box<[u32]>,
    /// Ids at or above this are match states.
    first_match: u32,
    depth: Box<[u32]>,
    /// Match state `k` (counted from the first) reports `match_pids[match_from[k]..match_from[k+1]]`.
    match_from: Box<[u32]>,
    match_pids: Box<[u32]>,
}

impl Dense {
    pub(super) fn new<A: Automaton>(
        aut: &A,
        patterns: &[Vec<u8>],
        marker: u8,
    ) -> Result<Self, CoreError> {
        let mut used = [false; 256];
        for p in patterns {
            for &b in p {
                used[b as usize] = true;
            }
        }
        let mut classes = Box::new([0u32; 256]);
        let mut reps: Vec<Option<u8>> = vec![(0..=255u8).find(|&b| !used[b as usize])];
        for b in 0..=255u8 {
            if used[b as usize] {
                classes[b as usize] = reps.len() as u32;
                reps.push(Some(b));
            }
        }
        // Extra columns: "marker, then b" for each ASCII word byte b of the patterns; identity.
        let words: Vec<u8> = (0..128u8)
            .filter(|&b| used[b as usize] && b.is_ascii_alphanumeric())
            .collect();
        let mut ascii = Box::new([0u32; 512]);
        for n in 0..128u8 {
            ascii[ascii_key(n, false, false)] = classes[n as usize];
            ascii[ascii_key(n, true, false)] = classes[n as usize];
        }
        for (k, &b) in words.iter().enumerate() {
            ascii[ascii_key(b, true, false)] = (reps.len() + k) as u32;
        }
        let identity = reps.len() + words.len();
        for n in 0..128u8 {
            for ws in [false, true] {
                ascii[ascii_key(n, ws, true)] = identity as u32;
            }
        }
        let stride = identity + 1;

        // Breadth-first numbering of the crate's states, with their transitions by number.
        let base = reps.len();
        let start = start_of(aut)?;
        let mut order = vec![start];
        let mut bfs: FxHashMap<StateID, u32> = FxHashMap::default();
        bfs.insert(start, 0);
        let mut bfs_trans: Vec<u32> = Vec::new();
        let mut at = 0;
        while at < order.len() {
            let sid = order[at];
            at += 1;
            for rep in &reps {
                let Some(b) = *rep else {
                    bfs_trans.push(0);
                    continue;
                };
                let t = aut.next_state(Anchored::No, sid, b);
                let next = order.len() as u32;
                let k = *bfs.entry(t).or_insert(next);
                if k == next {
                    order.push(t);
                }
                bfs_trans.push(k);
            }
        }
        drop(bfs);
        let too_big = || {
            CoreError::InvalidPattern(
                "the phrase set is too large to compile (more than 2^32 table entries)".into(),
            )
        };
        if order
            .len()
            .checked_mul(stride)
            .map_or(true, |n| n > u32::MAX as usize)
        {
            return Err(too_big());
        }
        // Non-match states first (start stays 0: it never matches), then match states.
        let is_match: Vec<bool> = order.iter().map(|&s| aut.is_match(s)).collect();
        let renumbered: Vec<usize> = (0..order.len())
            .filter(|&k| !is_match[k])
            .chain((0..order.len()).filter(|&k| is_match[k]))
            .collect();
        let plain = renumbered.iter().filter(|&&k| !is_match[k]).count();
        let mut final_id = vec![0u32; order.len()];
        for (new, &old) in renumbered.iter().enumerate() {
            final_id[old] = (new * stride) as u32;
        }
        let mark_class = classes[marker as usize] as usize;
        let mut trans = vec![0u32; order.len() * stride].into_boxed_slice();
        let mut match_from = Vec::with_capacity(order.len() - plain + 1);
        let mut match_pids = Vec::new();
        for (new, &old) in renumbered.iter().enumerate() {
            let row = &mut trans[new * stride..(new + 1) * stride];
            let from = &bfs_trans[old * base..(old + 1) * base];
            for (slot, &t) in row.iter_mut().zip(from) {
                *slot = final_id[t as usize];
            }
            if !words.is_empty() {
                let after_mark = bfs_trans[old * base + mark_class] as usize;
                for (w, &b) in words.iter().enumerate() {
                    let t = bfs_trans[after_mark * base + classes[b as usize] as usize];
                    row[base + w] = final_id[t as usize];
                }
            }
            row[identity] = (new * stride) as u32;
            if new >= plain {
                let s = order[old];
                match_from.push(match_pids.len() as u32);
                for i in 0..aut.match_len(s) {
                    match_pids.push(aut.match_pattern(s, i).as_u32());
                }
            }
        }
        match_from.push(match_pids.len() as u32);
        let mut dense = Self {
            classes,
            ascii,
            stride,
            trans,
            first_match: (plain * stride) as u32,
            depth: vec![0u32; order.len()].into_boxed_slice(),
            match_from: match_from.into_boxed_slice(),
            match_pids: match_pids.into_boxed_slice(),
        };
        for p in patterns {
            let (mut sid, mut d) = (0u32, 0u32);
            for &b in p {
                sid = dense.next(sid, b);
                d += u32::from(b != marker);
                let slot = &mut dense.depth[sid as usize / stride];
                *slot = (*slot).max(d);
            }
        }
        Ok(dense)
    }

    pub(super) fn memory_usage(&self) -> usize {
        4 * (self.trans.len() + self.depth.len() + self.match_from.len() + self.match_pids.len())
            + std::mem::size_of::<Self>()
            + std::mem::size_of_val(&*self.ascii)
            + std::mem::size_of_val(&*self.classes)
    }
}

impl Walk for Dense {
    #[inline(always)]
    fn start(&self) -> u32 {
        0
    }

    #[inline(always)]
    fn next(&self, sid: u32, byte: u8) -> u32 {
        self.trans[sid as usize + self.classes[byte as usize] as usize]
    }

    fn ascii_column(&self, key: usize) -> u32 {
        self.ascii[key & 0x1ff]
    }

    #[inline(always)]
    fn next_column(&self, sid: u32, column: u32) -> u32 {
        self.trans[sid as usize + column as usize]
    }

    #[inline(always)]
    fn is_match(&self, sid: u32) -> bool {
        sid >= self.first_match
    }

    fn for_each_match(&self, sid: u32, mut f: impl FnMut(usize)) {
        let k = (sid - self.first_match) as usize / self.stride;
        let (a, b) = (self.match_from[k] as usize, self.match_from[k + 1] as usize);
        for &p in &self.match_pids[a..b] {
            f(p as usize);
        }
    }

    fn depth(&self, sid: u32) -> usize {
        self.depth[sid as usize / self.stride] as usize
    }
}

/// The crate's contiguous NFA (large phrase sets), with a depth map on the side.
#[derive(Debug)]
pub(super) struct Nfa {
    nfa: NFA,
    start: u32,
    depth: FxHashMap<u32, u32>,
}

impl Nfa {
    pub(super) fn new(nfa: NFA, patterns: &[Vec<u8>], marker: u8) -> Result<Self, CoreError> {
        let start = start_of(&nfa)?.as_u32();
        let mut me = Self {
            nfa,
            start,
            depth: FxHashMap::default(),
        };
        me.depth.insert(start, 0);
        for p in patterns {
            let (mut sid, mut d) = (start, 0u32);
            for &b in p {
                sid = me.next(sid, b);
                d += u32::from(b != marker);
                let slot = me.depth.entry(sid).or_insert(0);
                *slot = (*slot).max(d);
            }
        }
        Ok(me)
    }

    pub(super) fn memory_usage(&self) -> usize {
        self.nfa.memory_usage() + self.depth.capacity() * (std::mem::size_of::<(u32, u32)>() + 1)
    }
}

#[inline(always)]
fn id(sid: u32) -> StateID {
    StateID::new_unchecked(sid as usize)
}

impl Walk for Nfa {
    fn start(&self) -> u32 {
        self.start
    }

    #[inline(always)]
    fn next(&self, sid: u32, byte: u8) -> u32 {
        self.nfa.next_state(Anchored::No, id(sid), byte).as_u32()
    }

    fn ascii_column(&self, key: usize) -> u32 {
        key as u32
    }

    #[inline(always)]
    fn next_column(&self, sid: u32, key: u32) -> u32 {
        if key & 0x100 != 0 {
            return sid;
        }
        let sid = if key & 0x80 != 0 {
            self.next(sid, super::MARK)
        } else {
            sid
        };
        self.next(sid, (key & 0x7f) as u8)
    }

    #[inline(always)]
    fn is_match(&self, sid: u32) -> bool {
        self.nfa.is_match(id(sid))
    }

    fn for_each_match(&self, sid: u32, mut f: impl FnMut(usize)) {
        for i in 0..self.nfa.match_len(id(sid)) {
            f(self.nfa.match_pattern(id(sid), i).as_usize());
        }
    }

    fn depth(&self, sid: u32) -> usize {
        // A state no pattern prefix reaches is never entered; be conservative anyway.
        self.depth.get(&sid).map_or(usize::MAX, |&d| d as usize)
    }
}
