//! Std-only benchmark of the text hot path without Python in the way.
//!
//! `cargo bench -p checkstream-core --bench text -- [PHRASES_FILE CORPUS_FILE]`
//! With no files it generates a corpus like benches/bench_matcher.py's "synthetic" one (random
//! words, 10k phrases of 1-3 words from the same vocabulary). For its "english" corpus, run
//! `python benches/bench_matcher.py --dump target/textbench` and pass
//! `target/textbench/phrases.txt target/textbench/corpus.txt`. Prints MB/s of: the `aho-corasick` crate's own overlapping
//! search on the raw text (the floor of what any AC matcher on this data can do), our
//! `find_all` (normalisation, whole-word, offsets), `normalize` alone, and streaming in 16-byte
//! and 4 KiB chunks.
//! The crate's search is also run on the normalised text (timed against the original's size):
//! the automaton walk alone, none of our bookkeeping. `TEXTBENCH_ONLY=<substring>` runs only
//! the measures whose name contains it.
//! Times are the best of 5 batches (each at least 0.2 s of runs) in thread CPU time.

use std::hint::black_box;
use std::sync::Arc;
use std::time::Instant;

use aho_corasick::{AhoCorasick, AhoCorasickKind, MatchKind};
use checkstream_core::matcher::{PhraseMatcher, WholeWord};
use checkstream_core::normalize::Normalizer;

/// Small deterministic generator (xorshift) so the bench needs no extra crate.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

fn generate() -> (Vec<String>, String) {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let vocab: Vec<String> = (0..20_000)
        .map(|_| {
            let n = 3 + rng.below(8);
            (0..n)
                .map(|_| (b'a' + rng.below(26) as u8) as char)
                .collect()
        })
        .collect();
    let phrases: Vec<String> = (0..10_000)
        .map(|_| {
            let k = 1 + rng.below(3);
            (0..k)
                .map(|_| vocab[rng.below(vocab.len())].as_str())
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect();
    let mut text = String::new();
    while text.len() < 4_000_000 {
        if rng.below(300) == 0 {
            text.push_str(&phrases[rng.below(phrases.len())]);
        } else {
            text.push_str(&vocab[rng.below(vocab.len())]);
        }
        text.push_str([" ", " ", " ", " ", " ", ", ", ". ", "\n"][rng.below(8)]);
    }
    (phrases, text)
}

/// CPU time of this thread in seconds (Linux schedstat), so that time spent preempted on a
/// shared machine is not counted; falls back to wall time elsewhere.
fn cpu_seconds() -> Option<f64> {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let ns: f64 = s.split_whitespace().next()?.parse().ok()?;
    Some(ns / 1e9)
}

fn mbps(bytes: usize, f: impl Fn() -> usize) -> (f64, usize) {
    // CPU time is accounted in scheduler ticks: time batches of runs of at least 0.2 s.
    let mut best = f64::MAX;
    let mut out = 0;
    for _ in 0..5 {
        let (c0, t) = (cpu_seconds(), Instant::now());
        let mut runs = 0u32;
        while runs == 0 || t.elapsed().as_secs_f64() < 0.2 {
            out = black_box(f());
            runs += 1;
        }
        let wall = t.elapsed().as_secs_f64();
        let spent = match (c0, cpu_seconds()) {
            (Some(a), Some(b)) if b > a => b - a,
            _ => wall,
        };
        best = best.min(spent / f64::from(runs));
    }
    (bytes as f64 / 1e6 / best, out)
}

fn main() {
    let args: Vec<String> = std::env::args().filter(|a| !a.starts_with('-')).collect();
    // `TEXTBENCH_ONLY=find_all` runs only the measures whose name contains that string.
    let only = std::env::var("TEXTBENCH_ONLY").unwrap_or_default();
    let run = |name: &str| name.contains(only.as_str());
    let (phrases, text) = if args.len() >= 3 {
        let p = std::fs::read_to_string(&args[1]).expect("phrases file");
        let t = std::fs::read_to_string(&args[2]).expect("corpus file");
        (p.lines().map(str::to_owned).collect(), t)
    } else {
        generate()
    };
    let n = text.len();
    let normalized = Normalizer::new(false).normalize(&text);
    for kind in [AhoCorasickKind::DFA, AhoCorasickKind::ContiguousNFA] {
        let name = format!("aho-corasick {kind:?} overlapping");
        if !run(&name) {
            continue;
        }
        let ac = AhoCorasick::builder()
            .match_kind(MatchKind::Standard)
            .kind(Some(kind))
            .build(&phrases)
            .expect("build");
        let (speed, found) = mbps(n, || ac.find_overlapping_iter(&text).count());
        println!("{name}, raw text: {speed:.0} MB/s ({found} matches)");
        let (speed, found) = mbps(n, || ac.find_overlapping_iter(&normalized).count());
        println!("{name}, normalised text (MB of the original): {speed:.0} MB/s ({found} matches)");
    }
    let m = Arc::new(PhraseMatcher::new(&phrases, WholeWord::All(true), false).expect("build"));
    if run("find_all (normalise + whole-word)") {
        let (speed, found) = mbps(n, || m.find_all(&text).len());
        println!("find_all (normalise + whole-word): {speed:.0} MB/s ({found} matches)");
    }
    if run("find_all (normalise, substring)") {
        let sub = PhraseMatcher::new(&phrases, WholeWord::All(false), false).expect("build");
        let (speed, found) = mbps(n, || sub.find_all(&text).len());
        println!("find_all (normalise, substring): {speed:.0} MB/s ({found} matches)");
    }
    if run("normalize") {
        let norm = Normalizer::new(false);
        let (speed, _) = mbps(n, || norm.normalize(&text).len());
        println!("normalize: {speed:.0} MB/s");
    }
    if run("stream, 16-byte chunks") {
        let (speed, found) = mbps(n, || {
            let mut s = m.stream();
            let mut k = 0;
            let bytes = text.as_bytes();
            for c in bytes.chunks(16) {
                k += s.feed_bytes(c).map_or(0, |v| v.len());
            }
            k + s.finish().map_or(0, |v| v.len())
        });
        println!("stream, 16-byte chunks: {speed:.0} MB/s ({found} matches)");
    }
    if run("stream, 4 KiB chunks") {
        let (speed, found) = mbps(n, || {
            let mut s = m.stream();
            let mut k = 0;
            let bytes = text.as_bytes();
            for c in bytes.chunks(4096) {
                k += s.feed_bytes(c).map_or(0, |v| v.len());
            }
            k + s.finish().map_or(0, |v| v.len())
        });
        println!("stream, 4 KiB chunks: {speed:.0} MB/s ({found} matches)");
    }
}
