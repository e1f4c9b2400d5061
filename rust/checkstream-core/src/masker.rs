//! Token masker: bans the next tokens that would complete a banned token-id sequence.
//!
//! The banned sequences are compiled once into an Aho-Corasick automaton over token ids
//! (a trie with failure links). A generation's whole history is summarised by one `u32`
//! state that the *caller* owns (one per batch row), so one compiled masker is shared
//! read-only by every request and the per-step work is: advance each row's state by the
//! token it just sampled, then list the tokens that must not come next.
//!
//! Banning happens at the last token of each sequence: a sequence `[a, b, c]` bans `c`
//! exactly when the stream so far ends with `[a, b]`; a one-token sequence bans its token
//! everywhere. The trie nodes that are suffixes of the stream are exactly the current state
//! and its failure chain, so the banned set of a state is the union of the "own" sets
//! (`{t : child(u, t) ends a sequence}`) along that chain.
//!
//! Layout decisions for the hot path (vocabularies of 128k+ ids, 10k+ sequences):
//! - the root's transitions are a dense table indexed by token id (one load, no search),
//!   because every row falls back to the root on almost every step; other states keep sorted
//!   sparse edge lists (most have one or two children) searched by binary search;
//! - per-state banned sets are never copied down the failure chain: each state stores only
//!   the tokens that no state further down its chain already bans, plus a link (`ban_head`)
//!   to the first state of its chain with a non-empty own set. A big root set (all one-token
//!   sequences) is therefore stored once, and the chain's sets are disjoint, so the pairs a
//!   step returns carry no duplicates;
//! - states are numbered in breadth-first order, which keeps the shallow, hot states close
//!   together in memory.

use crate::error::CoreError;

/// Id of the start state (empty history).
pub const START_STATE: u32 = 0;
const ROOT: u32 = START_STATE;
const NONE: u32 = u32::MAX;

/// Compiled, immutable set of banned token-id sequences. Cheap to share across threads.
#[derive(Debug, Clone)]
pub struct TokenMasker {
    vocab_size: u32,
    num_sequences: usize,
    /// Failure link of each state (the root's points to itself).
    fail: Vec<u32>,
    /// Sparse transitions of non-root states: `edge_tok/edge_dst[edge_start[s]..edge_start[s+1]]`,
    /// sorted by token.
    edge_start: Vec<u32>,
    edge_tok: Vec<u32>,
    edge_dst: Vec<u32>,
    /// Dense transitions of the root, indexed by token id; `ROOT` where no sequence starts.
    root_next: Vec<u32>,
    /// Own banned tokens of each state, minus those banned further down its failure chain.
    own_start: Vec<u32>,
    own_tok: Vec<u32>,
    /// First state of each state's failure chain (itself included) whose own set is non-empty.
    ban_head: Vec<u32>,
}

/// Per-node data while the trie is being built (before breadth-first renumbering).
struct BuildNode {
    children: Vec<(u32, u32)>,
    /// Tokens whose child ends a banned sequence.
    own: Vec<u32>,
}

impl TokenMasker {
    /// Compiles `sequences` (each a non-empty list of token ids below `vocab_size`).
    ///
    /// Duplicate sequences are allowed and count once in the automaton (but in
    /// [`num_sequences`](Self::num_sequences) as given).
    pub fn new<S: AsRef<[u32]>>(sequences: &[S], vocab_size: u32) -> Result<Self, CoreError> {
        if vocab_size == 0 {
            return Err(CoreError::InvalidArgument(
                "vocab_size must be positive".into(),
            ));
        }
        if sequences.is_empty() {
            return Err(CoreError::InvalidPattern(
                "the set of banned sequences is empty".into(),
            ));
        }
        let mut total_tokens: usize = 0;
        for (i, seq) in sequences.iter().enumerate() {
            let seq = seq.as_ref();
            if seq.is_empty() {
                return Err(CoreError::InvalidPattern(format!(
                    "banned sequence {i} is empty"
                )));
            }
            if let Some((j, &t)) = seq.iter().enumerate().find(|&(_, &t)| t >= vocab_size) {
                return Err(CoreError::InvalidPattern(format!(
                    "banned sequence {i}, position {j}: token id {t} is out of range for \
                     vocab_size {vocab_size}"
                )));
            }
            total_tokens += seq.len();
        }
        // States are u32 and NONE is reserved; the trie has at most total_tokens + 1 nodes.
        if total_tokens >= (NONE as usize) - 1 {
            return Err(CoreError::InvalidPattern(format!(
                "banned sequences hold {total_tokens} tokens in total, more than a masker supports"
            )));
        }

        // Trie built from lexicographically sorted sequences: a node's child for token `t`,
        // if it exists, is then always its most recently added child, so no map is needed.
        let mut order: Vec<&[u32]> = sequences.iter().map(|s| s.as_ref()).collect();
        order.sort_unstable();
        order.dedup();
        let mut nodes = vec![BuildNode {
            children: Vec::new(),
            own: Vec::new(),
        }];
        for seq in &order {
            let mut node = 0usize;
            for (k, &t) in seq.iter().enumerate() {
                let next = match nodes[node].children.last() {
                    Some(&(tok, child)) if tok == t => child as usize,
                    _ => {
                        let child = nodes.len();
                        nodes.push(BuildNode {
                            children: Vec::new(),
                            own: Vec::new(),
                        });
                        nodes[node].children.push((t, child as u32));
                        child
                    }
                };
                if k + 1 == seq.len() && nodes[node].own.last() != Some(&t) {
                    nodes[node].own.push(t);
                }
                node = next;
            }
        }

        // Breadth-first renumbering: old id -> new id.
        let n = nodes.len();
        let mut bfs: Vec<u32> = Vec::with_capacity(n);
        let mut new_id = vec![0u32; n];
        bfs.push(0);
        let mut head = 0;
        while head < bfs.len() {
            let old = bfs[head] as usize;
            new_id[old] = head as u32;
            head += 1;
            for &(_, c) in &nodes[old].children {
                bfs.push(c);
            }
        }

        let mut edge_start = Vec::with_capacity(n + 1);
        let mut edge_tok = Vec::with_capacity(n.saturating_sub(1));
        let mut edge_dst = Vec::with_capacity(n.saturating_sub(1));
        let mut root_next = vec![ROOT; vocab_size as usize];
        edge_start.push(0u32);
        for (new, &old) in bfs.iter().enumerate() {
            let node = &nodes[old as usize];
            if new == 0 {
                for &(t, c) in &node.children {
                    root_next[t as usize] = new_id[c as usize];
                }
            } else {
                // Children were pushed in increasing token order (sorted input).
                for &(t, c) in &node.children {
                    edge_tok.push(t);
                    edge_dst.push(new_id[c as usize]);
                }
            }
            edge_start.push(edge_tok.len() as u32);
        }

        let mut masker = TokenMasker {
            vocab_size,
            num_sequences: sequences.len(),
            fail: vec![ROOT; n],
            edge_start,
            edge_tok,
            edge_dst,
            root_next,
            own_start: Vec::with_capacity(n + 1),
            own_tok: Vec::new(),
            ban_head: vec![NONE; n],
        };

        // Failure links, in breadth-first order so that fail(parent) is final before a child.
        for s in 0..n as u32 {
            let (lo, hi) = masker.edges(s);
            let children: Vec<(u32, u32)> = if s == ROOT {
                nodes[0]
                    .children
                    .iter()
                    .map(|&(t, c)| (t, new_id[c as usize]))
                    .collect()
            } else {
                (lo..hi)
                    .map(|e| (masker.edge_tok[e], masker.edge_dst[e]))
                    .collect()
            };
            for (t, c) in children {
                masker.fail[c as usize] = if s == ROOT {
                    ROOT
                } else {
                    masker.step_unchecked(masker.fail[s as usize], t)
                };
            }
        }

        // Own sets, de-duplicated against the failure chain, and the chain heads.
        masker.own_start.push(0);
        for (s, &old) in bfs.iter().enumerate() {
            let own = &nodes[old as usize].own;
            let below = if s == 0 {
                NONE
            } else {
                masker.ban_head[masker.fail[s] as usize]
            };
            for &t in own {
                if !masker.chain_bans(below, t) {
                    masker.own_tok.push(t);
                }
            }
            masker.own_start.push(masker.own_tok.len() as u32);
            let has_own = masker.own_start[s + 1] > masker.own_start[s];
            masker.ban_head[s] = if has_own { s as u32 } else { below };
        }
        Ok(masker)
    }

    /// Size of the token-id space (ids are `0..vocab_size`).
    pub fn vocab_size(&self) -> u32 {
        self.vocab_size
    }

    /// Number of sequences the masker was built from (duplicates included).
    pub fn num_sequences(&self) -> usize {
        self.num_sequences
    }

    /// Number of automaton states; valid states are `0..num_states`.
    pub fn num_states(&self) -> usize {
        self.fail.len()
    }

    /// State of a generation that has produced nothing yet.
    pub fn start_state(&self) -> u32 {
        START_STATE
    }

    /// Tokens banned in every state (the one-token sequences), sorted.
    pub fn global_banned(&self) -> &[u32] {
        self.own(ROOT)
    }

    /// Approximate heap size of the compiled automaton, in bytes.
    pub fn memory_bytes(&self) -> usize {
        4 * (self.fail.len()
            + self.edge_start.len()
            + self.edge_tok.len()
            + self.edge_dst.len()
            + self.root_next.len()
            + self.own_start.len()
            + self.own_tok.len()
            + self.ban_head.len())
    }

    /// Next state after `token`, or an error if the state or token is out of range.
    pub fn step(&self, state: u32, token: u32) -> Result<u32, CoreError> {
        self.check_state(state, None)?;
        self.check_token(token, None)?;
        Ok(self.step_unchecked(state, token))
    }

    /// Advances `state` over a token prefix (e.g. the output generated so far).
    pub fn walk<T: Copy + TryInto<u32>>(&self, state: u32, tokens: &[T]) -> Result<u32, CoreError>
    where
        i128: From<T>,
    {
        self.check_state(state, None)?;
        let mut s = state;
        for (i, &t) in tokens.iter().enumerate() {
            let t = self.token(t, i, "position")?;
            s = self.step_unchecked(s, t);
        }
        Ok(s)
    }

    /// Advances each row's state by that row's sampled token, in place. Nothing is changed
    /// if any state or token is invalid.
    pub fn advance<T: Copy + TryInto<u32>>(
        &self,
        states: &mut [u32],
        tokens: &[T],
    ) -> Result<(), CoreError>
    where
        i128: From<T>,
    {
        if states.len() != tokens.len() {
            return Err(CoreError::InvalidArgument(format!(
                "states has {} rows but tokens has {}",
                states.len(),
                tokens.len()
            )));
        }
        self.check_states(states)?;
        for (i, &t) in tokens.iter().enumerate() {
            self.token(t, i, "row")?;
        }
        for (s, &t) in states.iter_mut().zip(tokens) {
            // Validated above; the conversion cannot fail here.
            let t: u32 = t.try_into().unwrap_or(0);
            *s = self.step_unchecked(*s, t);
        }
        Ok(())
    }

    /// Calls `f(row, token)` for every token that would complete a banned sequence next in
    /// each row. With `include_global == false` the one-token sequences (see
    /// [`global_banned`](Self::global_banned)) are left out, for callers that mask those
    /// columns once for the whole batch.
    pub fn for_each_banned(
        &self,
        states: &[u32],
        include_global: bool,
        mut f: impl FnMut(usize, u32),
    ) -> Result<(), CoreError> {
        self.check_states(states)?;
        for (row, &s) in states.iter().enumerate() {
            let mut u = self.ban_head[s as usize];
            while u != NONE {
                if u == ROOT && !include_global {
                    break;
                }
                for &t in self.own(u) {
                    f(row, t);
                }
                u = if u == ROOT {
                    NONE
                } else {
                    self.ban_head[self.fail[u as usize] as usize]
                };
            }
        }
        Ok(())
    }

    /// Number of pairs [`banned`](Self::banned) would return (to size buffers).
    pub fn count_banned(&self, states: &[u32], include_global: bool) -> Result<usize, CoreError> {
        self.check_states(states)?;
        let mut n = 0usize;
        for &s in states {
            let mut u = self.ban_head[s as usize];
            while u != NONE && (include_global || u != ROOT) {
                n += self.own(u).len();
                u = self.chain_next(u);
            }
        }
        Ok(n)
    }

    /// Banned `(rows, token_ids)` pairs for a batch, as index vectors ready for an
    /// advanced-indexing write such as `logits[rows, token_ids] = -inf`.
    pub fn banned(
        &self,
        states: &[u32],
        include_global: bool,
    ) -> Result<(Vec<i64>, Vec<i64>), CoreError> {
        // Counting first (a cheap walk of the chains) sizes the vectors exactly: no
        // reallocation copies for the tens of thousands of pairs a big batch can produce.
        let n = self.count_banned(states, include_global)?;
        let mut rows = Vec::with_capacity(n);
        let mut toks = Vec::with_capacity(n);
        self.for_each_banned(states, include_global, |r, t| {
            rows.push(r as i64);
            toks.push(i64::from(t));
        })?;
        Ok((rows, toks))
    }

    /// Writes the banned pairs into caller-owned buffers (e.g. pinned host memory reused
    /// every step) and returns how many were written. Fails, naming the size needed, if the
    /// buffers are too short; their contents are then unspecified.
    pub fn banned_into(
        &self,
        states: &[u32],
        include_global: bool,
        rows: &mut [i64],
        toks: &mut [i64],
    ) -> Result<usize, CoreError> {
        let cap = rows.len().min(toks.len());
        let mut n = 0usize;
        self.for_each_banned(states, include_global, |r, t| {
            if n < cap {
                rows[n] = r as i64;
                toks[n] = i64::from(t);
            }
            n += 1;
        })?;
        if n > cap {
            return Err(CoreError::InvalidArgument(format!(
                "the buffers hold {cap} pairs but this step bans {n}"
            )));
        }
        Ok(n)
    }

    /// Writes the banned entries as flat offsets `row * width + token` into a caller-owned
    /// buffer and returns how many were written: one index array, so a device write is one
    /// host-to-device copy and one `index_fill_` on the flattened logits. Fails, naming the
    /// size needed, if the buffer is too short.
    pub fn banned_flat_into(
        &self,
        states: &[u32],
        width: usize,
        include_global: bool,
        out: &mut [i64],
    ) -> Result<usize, CoreError> {
        if width < self.vocab_size as usize {
            return Err(CoreError::InvalidArgument(format!(
                "width {width} is smaller than vocab_size {}",
                self.vocab_size
            )));
        }
        if states
            .len()
            .checked_mul(width)
            .map_or(true, |n| n > i64::MAX as usize)
        {
            return Err(CoreError::InvalidArgument(format!(
                "{} rows x width {width} overflow a 64-bit offset",
                states.len()
            )));
        }
        let cap = out.len();
        let mut n = 0usize;
        self.for_each_banned(states, include_global, |r, t| {
            if n < cap {
                out[n] = (r * width + t as usize) as i64;
            }
            n += 1;
        })?;
        if n > cap {
            return Err(CoreError::InvalidArgument(format!(
                "the buffer holds {cap} entries but this step bans {n}"
            )));
        }
        Ok(n)
    }

    /// Writes `value` into `logits[row * width + token]` for every banned pair; `logits` is a
    /// row-major `[states.len(), width]` matrix. Returns the number of entries written.
    pub fn apply<T: Copy>(
        &self,
        states: &[u32],
        logits: &mut [T],
        width: usize,
        value: T,
    ) -> Result<usize, CoreError> {
        if width < self.vocab_size as usize {
            return Err(CoreError::InvalidArgument(format!(
                "logits have {width} columns, fewer than vocab_size {}",
                self.vocab_size
            )));
        }
        if states.len().checked_mul(width) != Some(logits.len()) {
            return Err(CoreError::InvalidArgument(format!(
                "logits hold {} values, not rows {} x width {width}",
                logits.len(),
                states.len()
            )));
        }
        let mut written = 0usize;
        self.for_each_banned(states, true, |r, t| {
            logits[r * width + t as usize] = value;
            written += 1;
        })?;
        Ok(written)
    }

    /// Banned next tokens of a single state, sorted.
    pub fn banned_tokens(&self, state: u32) -> Result<Vec<u32>, CoreError> {
        let mut out = Vec::new();
        self.for_each_banned(&[state], true, |_, t| out.push(t))?;
        out.sort_unstable();
        Ok(out)
    }

    #[inline]
    fn edges(&self, s: u32) -> (usize, usize) {
        (
            self.edge_start[s as usize] as usize,
            self.edge_start[s as usize + 1] as usize,
        )
    }

    #[inline]
    fn own(&self, s: u32) -> &[u32] {
        &self.own_tok[self.own_start[s as usize] as usize..self.own_start[s as usize + 1] as usize]
    }

    /// Aho-Corasick transition: follow failure links until a state has an edge for `token`;
    /// the root's dense table ends every search in one load.
    #[inline]
    fn step_unchecked(&self, state: u32, token: u32) -> u32 {
        let mut u = state;
        loop {
            if u == ROOT {
                return self.root_next[token as usize];
            }
            let (lo, hi) = self.edges(u);
            if let Ok(k) = self.edge_tok[lo..hi].binary_search(&token) {
                return self.edge_dst[lo + k];
            }
            u = self.fail[u as usize];
        }
    }

    /// Next state with a non-empty own set below `u` on its failure chain (`NONE` after the
    /// root).
    #[inline]
    fn chain_next(&self, u: u32) -> u32 {
        if u == ROOT {
            NONE
        } else {
            self.ban_head[self.fail[u as usize] as usize]
        }
    }

    /// Whether some state on the chain starting at ban-head `u` already bans `token`.
    fn chain_bans(&self, mut u: u32, token: u32) -> bool {
        while u != NONE {
            if self.own(u).binary_search(&token).is_ok() {
                return true;
            }
            u = if u == ROOT {
                NONE
            } else {
                self.ban_head[self.fail[u as usize] as usize]
            };
        }
        false
    }

    fn check_state(&self, state: u32, row: Option<usize>) -> Result<(), CoreError> {
        if (state as usize) < self.num_states() {
            return Ok(());
        }
        let at = row.map(|r| format!(" at row {r}")).unwrap_or_default();
        Err(CoreError::InvalidArgument(format!(
            "state {state}{at} is not a state of this masker (it has {} states)",
            self.num_states()
        )))
    }

    fn check_states(&self, states: &[u32]) -> Result<(), CoreError> {
        let n = self.num_states() as u32;
        match states.iter().position(|&s| s >= n) {
            Some(row) => self.check_state(states[row], Some(row)),
            None => Ok(()),
        }
    }

    fn check_token(&self, token: u32, row: Option<usize>) -> Result<(), CoreError> {
        if token < self.vocab_size {
            return Ok(());
        }
        let at = row.map(|r| format!(" at row {r}")).unwrap_or_default();
        Err(CoreError::InvalidArgument(format!(
            "token id {token}{at} is out of range for vocab_size {}",
            self.vocab_size
        )))
    }

    /// Converts a caller's token id (any integer type) to `u32`, naming where a bad one sits.
    fn token<T: Copy + TryInto<u32>>(&self, t: T, at: usize, what: &str) -> Result<u32, CoreError>
    where
        i128: From<T>,
    {
        match t.try_into() {
            Ok(u) if u < self.vocab_size => Ok(u),
            _ => Err(CoreError::InvalidArgument(format!(
                "token id {} at {what} {at} is out of range for vocab_size {}",
                i128::from(t),
                self.vocab_size
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reference: token t is banned after `history` iff some sequence's prefix ends the
    /// history and its last token is t.
    fn brute_force(seqs: &[Vec<u32>], history: &[u32]) -> Vec<u32> {
        let mut out: Vec<u32> = seqs
            .iter()
            .filter(|q| {
                let k = q.len() - 1;
                k <= history.len() && history[history.len() - k..] == q[..k]
            })
            .map(|q| q[q.len() - 1])
            .collect();
        out.sort_unstable();
        out.dedup();
        out
    }

    /// Small deterministic generator so the tests need no extra crate.
    struct XorShift(u64);
    impl XorShift {
        fn below(&mut self, n: u32) -> u32 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            (self.0 % u64::from(n)) as u32
        }
    }

    #[test]
    fn single_token_sequences_are_banned_everywhere() {
        let m = TokenMasker::new(&[vec![3u32], vec![5]], 10).unwrap();
        assert_eq!(m.banned_tokens(m.start_state()).unwrap(), vec![3, 5]);
        let s = m.walk(m.start_state(), &[1i64, 2, 3, 9]).unwrap();
        assert_eq!(m.banned_tokens(s).unwrap(), vec![3, 5]);
        assert_eq!(m.global_banned(), &[3, 5]);
    }

    #[test]
    fn multi_token_sequence_banned_only_after_its_prefix() {
        let m = TokenMasker::new(&[vec![1u32, 2, 3]], 10).unwrap();
        let s0 = m.start_state();
        assert!(m.banned_tokens(s0).unwrap().is_empty());
        let s = m.walk(s0, &[1i64, 2]).unwrap();
        assert_eq!(m.banned_tokens(s).unwrap(), vec![3]);
        // A failed partial match restarts correctly: 1 1 2 still ends with the prefix 1 2.
        let s = m.walk(s0, &[1i64, 1, 2]).unwrap();
        assert_eq!(m.banned_tokens(s).unwrap(), vec![3]);
        let s = m.walk(s0, &[1i64, 2, 4]).unwrap();
        assert!(m.banned_tokens(s).unwrap().is_empty());
    }

    #[test]
    fn failure_chain_sets_are_merged_without_duplicates() {
        // After "7 1 2": [1,2,3] bans 3, [2,4] bans 4, [2,3] bans 3 again, [9] bans 9.
        let seqs = vec![vec![1u32, 2, 3], vec![2, 4], vec![2, 3], vec![9]];
        let m = TokenMasker::new(&seqs, 10).unwrap();
        let s = m.walk(m.start_state(), &[7i64, 1, 2]).unwrap();
        let (rows, toks) = m.banned(&[s], true).unwrap();
        assert_eq!(rows, vec![0, 0, 0]);
        let mut toks = toks;
        toks.sort_unstable();
        assert_eq!(toks, vec![3, 4, 9]);
        let (_, without_global) = m.banned(&[s], false).unwrap();
        assert!(!without_global.contains(&9));
    }

    #[test]
    fn random_sets_match_brute_force() {
        let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
        for _ in 0..200 {
            let vocab = 2 + rng.below(8);
            let nseq = 1 + rng.below(12);
            let seqs: Vec<Vec<u32>> = (0..nseq)
                .map(|_| (0..1 + rng.below(4)).map(|_| rng.below(vocab)).collect())
                .collect();
            let m = TokenMasker::new(&seqs, vocab).unwrap();
            let mut history = Vec::new();
            let mut states = vec![m.start_state()];
            for _ in 0..40 {
                let t = rng.below(vocab);
                m.advance(&mut states, &[i64::from(t)]).unwrap();
                history.push(t);
                assert_eq!(
                    m.banned_tokens(states[0]).unwrap(),
                    brute_force(&seqs, &history)
                );
                let mut seen = Vec::new();
                m.for_each_banned(&states, true, |_, t| seen.push(t))
                    .unwrap();
                let n = seen.len();
                seen.sort_unstable();
                seen.dedup();
                assert_eq!(
                    seen.len(),
                    n,
                    "duplicate pairs for {seqs:?} after {history:?}"
                );
            }
        }
    }

    #[test]
    fn banned_into_and_count_agree_with_banned() {
        let seqs = vec![vec![1u32, 2], vec![2, 3], vec![4], vec![5]];
        let m = TokenMasker::new(&seqs, 8).unwrap();
        let states = vec![m.walk(0, &[1i64]).unwrap(), m.walk(0, &[2i64]).unwrap(), 0];
        for include_global in [true, false] {
            let (rows, toks) = m.banned(&states, include_global).unwrap();
            assert_eq!(m.count_banned(&states, include_global).unwrap(), rows.len());
            let (mut r, mut t) = (vec![-1i64; 16], vec![-1i64; 16]);
            let n = m
                .banned_into(&states, include_global, &mut r, &mut t)
                .unwrap();
            assert_eq!((&r[..n], &t[..n]), (&rows[..], &toks[..]));
        }
        let (mut r, mut t) = (vec![0i64; 3], vec![0i64; 3]);
        let err = m.banned_into(&states, true, &mut r, &mut t).unwrap_err();
        assert!(
            err.to_string()
                .contains("hold 3 pairs but this step bans 8"),
            "{err}"
        );
    }

    #[test]
    fn apply_writes_every_banned_pair() {
        let m = TokenMasker::new(&[vec![1u32, 2], vec![4]], 6).unwrap();
        let states = vec![m.start_state(), m.walk(m.start_state(), &[1i32]).unwrap()];
        let mut logits = vec![0.0f32; 2 * 8];
        let n = m.apply(&states, &mut logits, 8, f32::NEG_INFINITY).unwrap();
        assert_eq!(n, 3);
        let masked: Vec<usize> = (0..16).filter(|&i| logits[i].is_infinite()).collect();
        assert_eq!(masked, vec![4, 8 + 2, 8 + 4]);
    }

    #[test]
    fn bad_input_is_rejected_with_a_precise_error() {
        let empty: Vec<Vec<u32>> = vec![];
        assert!(matches!(
            TokenMasker::new(&empty, 5),
            Err(CoreError::InvalidPattern(_))
        ));
        let err = TokenMasker::new(&[vec![1u32], vec![]], 5).unwrap_err();
        assert!(err.to_string().contains("sequence 1 is empty"), "{err}");
        let err = TokenMasker::new(&[vec![1u32, 7]], 5).unwrap_err();
        assert!(err.to_string().contains("sequence 0, position 1"), "{err}");
        assert!(TokenMasker::new(&[vec![0u32]], 0).is_err());

        let m = TokenMasker::new(&[vec![1u32, 2]], 5).unwrap();
        let mut states = vec![0u32, 0];
        let err = m.advance(&mut states, &[1i64, 5]).unwrap_err();
        assert!(err.to_string().contains("row 1"), "{err}");
        assert!(m.advance(&mut states, &[-1i64, 1]).is_err());
        assert_eq!(
            states,
            vec![0, 0],
            "a rejected batch must leave the states untouched"
        );
        assert!(m.advance(&mut states, &[1i64]).is_err());
        let err = m.banned(&[0, 99], true).unwrap_err();
        assert!(err.to_string().contains("state 99 at row 1"), "{err}");
        let mut logits = vec![0.0f32; 10];
        assert!(m.apply(&[0, 0], &mut logits, 5, 0.0).is_ok());
        assert!(
            m.apply(&[0, 0], &mut logits[..8], 4, 0.0).is_err(),
            "narrower than vocab"
        );
        assert!(m.apply(&[0], &mut logits, 5, 0.0).is_err(), "rows mismatch");
    }
}
