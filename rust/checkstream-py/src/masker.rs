//! Python binding of the token masker (`checkstream._core.TokenMasker`).
//!
//! Batch calls read and write the caller's numpy arrays in place (no copies): `states`
//! (uint32, one per row), sampled `tokens` (int64/int32) and `logits` (float32/float16,
//! C-contiguous `[rows, width]`). Result pairs are moved into numpy arrays without copying.
//! The GIL is released around batch work from `DETACH_MIN_ROWS` rows on; below that the
//! release/re-acquire costs more than the work itself.

use checkstream_core::masker::TokenMasker;
use checkstream_core::CoreError as RsError;
use half::f16;
use numpy::{
    PyArray1, PyArray2, PyArrayMethods, PyReadonlyArray1, PyReadwriteArray1, PyUntypedArrayMethods,
};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;

use crate::errors::to_py;

/// `(rows, token_ids)` index arrays, int64, for an advanced-indexing write.
type Pairs<'py> = (Bound<'py, PyArray1<i64>>, Bound<'py, PyArray1<i64>>);

/// Batches of at least this many rows run with the GIL released.
const DETACH_MIN_ROWS: usize = 64;

/// Compiled set of banned token-id sequences (immutable; share it across requests).
///
/// Per-generation state is a uint32 id held by the caller (one per batch row). Banning is at
/// the last token of each sequence: a one-token sequence is banned everywhere, a longer one
/// only right after its other tokens were sampled.
#[pyclass(module = "checkstream._core", name = "TokenMasker", frozen)]
pub struct PyTokenMasker {
    inner: TokenMasker,
}

#[pymethods]
impl PyTokenMasker {
    #[new]
    #[pyo3(signature = (sequences, vocab_size))]
    fn new(py: Python<'_>, sequences: Vec<Vec<i64>>, vocab_size: i64) -> PyResult<Self> {
        let vocab = u32::try_from(vocab_size)
            .ok()
            .filter(|&v| v > 0)
            .ok_or_else(|| {
                PyValueError::new_err(format!(
                    "vocab_size must be in 1..={}, got {vocab_size}",
                    u32::MAX
                ))
            })?;
        let mut seqs: Vec<Vec<u32>> = Vec::with_capacity(sequences.len());
        for (i, seq) in sequences.iter().enumerate() {
            let mut out = Vec::with_capacity(seq.len());
            for (j, &t) in seq.iter().enumerate() {
                // Negative or >u32 ids get the same message as ids beyond the vocabulary.
                let t = u32::try_from(t).map_err(|_| {
                    to_py(RsError::InvalidPattern(format!(
                        "banned sequence {i}, position {j}: token id {t} is out of range for \
                         vocab_size {vocab}"
                    )))
                })?;
                out.push(t);
            }
            seqs.push(out);
        }
        let inner = py
            .detach(|| TokenMasker::new(&seqs, vocab))
            .map_err(to_py)?;
        Ok(Self { inner })
    }

    /// Size of the token-id space.
    #[getter]
    fn vocab_size(&self) -> u32 {
        self.inner.vocab_size()
    }

    /// Number of sequences given to the constructor (duplicates included).
    #[getter]
    fn num_sequences(&self) -> usize {
        self.inner.num_sequences()
    }

    /// Number of automaton states; valid states are `0..num_states`.
    #[getter]
    fn num_states(&self) -> usize {
        self.inner.num_states()
    }

    /// Approximate heap size of the compiled automaton, in bytes.
    #[getter]
    fn memory_bytes(&self) -> usize {
        self.inner.memory_bytes()
    }

    /// State of a generation that has produced nothing yet.
    fn start_state(&self) -> u32 {
        self.inner.start_state()
    }

    /// Tokens banned in every state (the one-token sequences), sorted, as int64.
    fn global_banned<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray1<i64>> {
        let ids: Vec<i64> = self
            .inner
            .global_banned()
            .iter()
            .map(|&t| i64::from(t))
            .collect();
        PyArray1::from_vec(py, ids)
    }

    /// Banned next tokens of one state, sorted.
    fn banned_tokens(&self, state: i64) -> PyResult<Vec<u32>> {
        self.inner.banned_tokens(state_id(state)?).map_err(to_py)
    }

    /// Advances `state` over a token prefix (e.g. the prompt or the output so far).
    fn walk(&self, py: Python<'_>, state: i64, tokens: Vec<i64>) -> PyResult<u32> {
        let state = state_id(state)?;
        if tokens.len() >= DETACH_MIN_ROWS {
            py.detach(|| self.inner.walk(state, &tokens))
        } else {
            self.inner.walk(state, &tokens)
        }
        .map_err(to_py)
    }

    /// Advances each row's state by that row's sampled token, in place.
    fn advance(
        &self,
        py: Python<'_>,
        states: &Bound<'_, PyAny>,
        tokens: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        let mut states = states_rw(states)?;
        let states = states
            .as_slice_mut()
            .map_err(|_| PyValueError::new_err("states must be C-contiguous"))?;
        let inner = &self.inner;
        if let Ok(arr) = tokens.cast::<PyArray1<i64>>() {
            let ro = readonly(arr, "tokens")?;
            let t = contiguous(&ro, "tokens")?;
            run(py, states.len(), || inner.advance(states, t))
        } else if let Ok(arr) = tokens.cast::<PyArray1<i32>>() {
            let ro = readonly(arr, "tokens")?;
            let t = contiguous(&ro, "tokens")?;
            run(py, states.len(), || inner.advance(states, t))
        } else {
            Err(wrong_array(
                "tokens",
                "a 1-D numpy array of dtype int64 or int32",
                tokens,
            ))
        }
    }

    /// `(rows, token_ids)` (int64) of every token that would complete a banned sequence
    /// next. With `include_global=False`, the one-token sequences (`global_banned()`) are
    /// left out, for callers that mask those columns once for the whole batch.
    #[pyo3(signature = (states, include_global = true))]
    fn banned<'py>(
        &self,
        py: Python<'py>,
        states: &Bound<'py, PyAny>,
        include_global: bool,
    ) -> PyResult<Pairs<'py>> {
        let ro = states_ro(states)?;
        let s = contiguous(&ro, "states")?;
        let inner = &self.inner;
        let (rows, toks) = run(py, s.len(), || inner.banned(s, include_global))?;
        Ok((PyArray1::from_vec(py, rows), PyArray1::from_vec(py, toks)))
    }

    /// Number of pairs `banned(states, include_global)` would return (to size buffers).
    #[pyo3(signature = (states, include_global = true))]
    fn count_banned(
        &self,
        py: Python<'_>,
        states: &Bound<'_, PyAny>,
        include_global: bool,
    ) -> PyResult<usize> {
        let ro = states_ro(states)?;
        let s = contiguous(&ro, "states")?;
        let inner = &self.inner;
        run(py, s.len(), || inner.count_banned(s, include_global))
    }

    /// Like `banned`, but writes the pairs into caller-owned int64 buffers (e.g. views of
    /// pinned host memory reused every step) and returns how many were written. Raises
    /// ValueError naming the size needed when the buffers are too short.
    #[pyo3(signature = (states, rows, token_ids, include_global = true))]
    fn banned_into(
        &self,
        py: Python<'_>,
        states: &Bound<'_, PyAny>,
        rows: &Bound<'_, PyAny>,
        token_ids: &Bound<'_, PyAny>,
        include_global: bool,
    ) -> PyResult<usize> {
        let ro = states_ro(states)?;
        let s = contiguous(&ro, "states")?;
        let mut rows = out_buffer(rows, "rows")?;
        let mut toks = out_buffer(token_ids, "token_ids")?;
        let r = rows.as_slice_mut().map_err(|_| not_contiguous("rows"))?;
        let t = toks
            .as_slice_mut()
            .map_err(|_| not_contiguous("token_ids"))?;
        let inner = &self.inner;
        run(py, s.len(), || inner.banned_into(s, include_global, r, t))
    }

    /// Writes the banned entries as flat offsets `row * width + token` (int64) into `out`
    /// and returns how many were written: one index array for a device write such as
    /// `logits.view(-1).index_fill_(0, out_dev[:n], -inf)` (one copy, one kernel). `width` is
    /// the logits' row length (>= vocab_size). Raises ValueError naming the size needed when
    /// `out` is too short.
    #[pyo3(signature = (states, width, out, include_global = true))]
    fn banned_flat_into(
        &self,
        py: Python<'_>,
        states: &Bound<'_, PyAny>,
        width: usize,
        out: &Bound<'_, PyAny>,
        include_global: bool,
    ) -> PyResult<usize> {
        let ro = states_ro(states)?;
        let s = contiguous(&ro, "states")?;
        let mut out = out_buffer(out, "out")?;
        let o = out.as_slice_mut().map_err(|_| not_contiguous("out"))?;
        let inner = &self.inner;
        run(py, s.len(), || {
            inner.banned_flat_into(s, width, include_global, o)
        })
    }

    /// Writes `value` in place into `logits[row, token]` for every banned pair; `logits` is a
    /// C-contiguous float32 or float16 array `[len(states), width]` with `width >= vocab_size`.
    /// Returns the number of entries written.
    #[pyo3(signature = (states, logits, value = f64::NEG_INFINITY))]
    fn apply(
        &self,
        py: Python<'_>,
        states: &Bound<'_, PyAny>,
        logits: &Bound<'_, PyAny>,
        value: f64,
    ) -> PyResult<usize> {
        let ro = states_ro(states)?;
        let s = contiguous(&ro, "states")?;
        let inner = &self.inner;
        if let Ok(arr) = logits.cast::<PyArray2<f32>>() {
            let width = logits_width(arr.shape(), s.len())?;
            // as_slice_mut also accepts Fortran order, which would scramble rows and columns.
            if !arr.is_c_contiguous() {
                return Err(not_contiguous("logits"));
            }
            let mut rw = readwrite2(arr)?;
            let l = rw.as_slice_mut().map_err(|_| not_contiguous("logits"))?;
            run(py, s.len(), || inner.apply(s, l, width, value as f32))
        } else if let Ok(arr) = logits.cast::<PyArray2<f16>>() {
            let width = logits_width(arr.shape(), s.len())?;
            // as_slice_mut also accepts Fortran order, which would scramble rows and columns.
            if !arr.is_c_contiguous() {
                return Err(not_contiguous("logits"));
            }
            let mut rw = readwrite2(arr)?;
            let l = rw.as_slice_mut().map_err(|_| not_contiguous("logits"))?;
            run(py, s.len(), || {
                inner.apply(s, l, width, f16::from_f64(value))
            })
        } else {
            Err(wrong_array(
                "logits",
                "a 2-D numpy array of dtype float32 or float16",
                logits,
            ))
        }
    }

    fn __repr__(&self) -> String {
        format!(
            "TokenMasker(num_sequences={}, num_states={}, vocab_size={})",
            self.inner.num_sequences(),
            self.inner.num_states(),
            self.inner.vocab_size()
        )
    }
}

/// Runs batch work, without the GIL when the batch is big enough to pay for the release.
fn run<T: Send>(
    py: Python<'_>,
    rows: usize,
    work: impl FnOnce() -> Result<T, RsError> + Send,
) -> PyResult<T> {
    if rows >= DETACH_MIN_ROWS {
        py.detach(work)
    } else {
        work()
    }
    .map_err(to_py)
}

fn state_id(state: i64) -> PyResult<u32> {
    u32::try_from(state)
        .map_err(|_| PyValueError::new_err(format!("state {state} is not a valid masker state")))
}

fn states_ro<'py>(obj: &Bound<'py, PyAny>) -> PyResult<PyReadonlyArray1<'py, u32>> {
    let arr = obj
        .cast::<PyArray1<u32>>()
        .map_err(|_| wrong_array("states", "a 1-D numpy array of dtype uint32", obj))?;
    readonly(arr, "states")
}

fn states_rw<'py>(obj: &Bound<'py, PyAny>) -> PyResult<PyReadwriteArray1<'py, u32>> {
    let arr = obj
        .cast::<PyArray1<u32>>()
        .map_err(|_| wrong_array("states", "a 1-D numpy array of dtype uint32", obj))?;
    arr.try_readwrite().map_err(|e| {
        PyValueError::new_err(format!(
            "states must be a writeable array not in use elsewhere: {e}"
        ))
    })
}

fn out_buffer<'py>(obj: &Bound<'py, PyAny>, name: &str) -> PyResult<PyReadwriteArray1<'py, i64>> {
    let arr = obj
        .cast::<PyArray1<i64>>()
        .map_err(|_| wrong_array(name, "a 1-D numpy array of dtype int64", obj))?;
    arr.try_readwrite().map_err(|e| {
        PyValueError::new_err(format!(
            "{name} must be a writeable array not in use elsewhere: {e}"
        ))
    })
}

fn readonly<'py, T: numpy::Element>(
    arr: &Bound<'py, PyArray1<T>>,
    name: &str,
) -> PyResult<PyReadonlyArray1<'py, T>> {
    arr.try_readonly()
        .map_err(|e| PyValueError::new_err(format!("{name} cannot be read: {e}")))
}

fn readwrite2<'py, T: numpy::Element>(
    arr: &Bound<'py, PyArray2<T>>,
) -> PyResult<numpy::PyReadwriteArray2<'py, T>> {
    arr.try_readwrite().map_err(|e| {
        PyValueError::new_err(format!(
            "logits must be a writeable array not in use elsewhere: {e}"
        ))
    })
}

fn contiguous<'a, T: numpy::Element>(
    ro: &'a PyReadonlyArray1<'_, T>,
    name: &str,
) -> PyResult<&'a [T]> {
    ro.as_slice().map_err(|_| not_contiguous(name))
}

fn logits_width(shape: &[usize], rows: usize) -> PyResult<usize> {
    if shape[0] != rows {
        return Err(PyValueError::new_err(format!(
            "logits have {} rows but states has {rows}",
            shape[0]
        )));
    }
    Ok(shape[1])
}

fn not_contiguous(name: &str) -> PyErr {
    PyValueError::new_err(format!(
        "{name} must be C-contiguous (pass numpy.ascontiguousarray({name}))"
    ))
}

/// TypeError naming what was expected and what arrived (dtype and ndim for numpy arrays).
fn wrong_array(name: &str, expected: &str, got: &Bound<'_, PyAny>) -> PyErr {
    let described = match (got.getattr("dtype"), got.getattr("ndim")) {
        (Ok(dtype), Ok(ndim)) => format!("a {ndim}-D array of dtype {dtype}"),
        _ => got
            .get_type()
            .name()
            .map(|n| n.to_string())
            .unwrap_or_else(|_| "an unknown object".into()),
    };
    PyTypeError::new_err(format!("{name} must be {expected}, got {described}"))
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyTokenMasker>()
}
