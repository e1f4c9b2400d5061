//! Token masker hot path without Python: one decoding step (advance every row by its
//! sampled token, then list the banned pairs) for batch 1/64/256, 10k banned sequences over a
//! 128,256-id vocabulary. std-only (no bench framework): `cargo bench -p checkstream-core
//! --bench masker`. The Python-side comparison with vLLM's bad_words loop is
//! benches/bench_masker.py.

use std::hint::black_box;
use std::time::Instant;

use checkstream_core::masker::TokenMasker;

const VOCAB: u32 = 128_256;

struct XorShift(u64);
impl XorShift {
    fn below(&mut self, n: u32) -> u32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % u64::from(n)) as u32
    }
}

/// Lengths 1-6 (2% one-token), tokens from a 30k sub-vocabulary so prefixes are shared.
fn sequences(rng: &mut XorShift, n: usize) -> Vec<Vec<u32>> {
    let pool: Vec<u32> = (0..30_000).map(|_| rng.below(VOCAB)).collect();
    (0..n)
        .map(|_| {
            let p = rng.below(100);
            let len = match p {
                0..=1 => 1,
                2..=31 => 2,
                32..=64 => 3,
                65..=86 => 4,
                87..=95 => 5,
                _ => 6,
            };
            (0..len)
                .map(|_| pool[rng.below(pool.len() as u32) as usize])
                .collect()
        })
        .collect()
}

/// `[steps][batch]` tokens; half the time a row replays a banned sequence's prefix.
fn streams(rng: &mut XorShift, seqs: &[Vec<u32>], batch: usize, steps: usize) -> Vec<Vec<i64>> {
    let per_row: Vec<Vec<i64>> = (0..batch)
        .map(|_| {
            let mut row = Vec::with_capacity(steps);
            while row.len() < steps {
                let piece: Vec<u32> = if rng.below(2) == 0 {
                    let q = &seqs[rng.below(seqs.len() as u32) as usize];
                    q[..q.len() - 1].to_vec()
                } else {
                    (0..1 + rng.below(3)).map(|_| rng.below(VOCAB)).collect()
                };
                row.extend(piece.iter().map(|&t| i64::from(t)));
            }
            row.truncate(steps);
            row
        })
        .collect();
    (0..steps)
        .map(|t| per_row.iter().map(|row| row[t]).collect())
        .collect()
}

fn main() {
    let mut rng = XorShift(0x2026_1127);
    let seqs = sequences(&mut rng, 10_000);
    let t0 = Instant::now();
    let m = TokenMasker::new(&seqs, VOCAB).expect("valid sequences");
    println!(
        "build 10k sequences: {:.2} ms, {} states, {:.2} MiB, {} one-token",
        t0.elapsed().as_secs_f64() * 1e3,
        m.num_states(),
        m.memory_bytes() as f64 / (1 << 20) as f64,
        m.global_banned().len()
    );
    let steps = 5_000;
    for batch in [1usize, 64, 256] {
        let toks = streams(&mut rng, &seqs, batch, steps);
        for include_global in [true, false] {
            let mut states = vec![m.start_state(); batch];
            let mut rows = vec![0i64; batch * 1024];
            let mut ids = vec![0i64; batch * 1024];
            let mut pairs = 0usize;
            let mut times = Vec::with_capacity(steps);
            for step in &toks {
                let t0 = Instant::now();
                m.advance(&mut states, step).expect("valid tokens");
                pairs += m
                    .banned_into(&states, include_global, &mut rows, &mut ids)
                    .expect("buffers large enough");
                black_box(&rows);
                times.push(t0.elapsed().as_secs_f64() * 1e6);
            }
            // Median: the machine is shared, and a mean would carry other processes' noise.
            let mean = times.iter().sum::<f64>() / steps as f64;
            times.sort_by(f64::total_cmp);
            println!(
                "batch {batch:>3}, include_global={include_global:<5}: median {:>7.2} µs/step, \
                 mean {mean:>7.2} (advance + banned_into), {:.0} pairs/step",
                times[steps / 2],
                pairs as f64 / steps as f64
            );
        }
    }
}
