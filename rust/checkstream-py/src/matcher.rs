//! Python binding of the streaming phrase matcher (`PhraseMatcher`, `MatchStream`).
//!
//! Matches cross the boundary as `(phrase_index, start, end)` tuples of char offsets.

use std::sync::Arc;

use checkstream_core::matcher::{Match, MatchStream, PhraseMatcher, WholeWord};
use pyo3::prelude::*;

use crate::errors::to_py;
use crate::normalize::DETACH_MIN_BYTES;

/// Phrase sets at least this large are compiled with the GIL released.
const DETACH_MIN_PHRASES: usize = 256;

pub(crate) type MatchTuple = (usize, usize, usize);

pub(crate) fn tuples(v: Vec<Match>) -> Vec<MatchTuple> {
    v.into_iter().map(|m| m.as_tuple()).collect()
}

#[derive(FromPyObject)]
enum WholeWordArg {
    One(bool),
    Each(Vec<bool>),
}

/// Immutable compiled phrase set; share it between any number of streams and threads.
#[pyclass(module = "checkstream._core", name = "PhraseMatcher", frozen)]
pub struct PyPhraseMatcher {
    pub(crate) inner: Arc<PhraseMatcher>,
}

#[pymethods]
impl PyPhraseMatcher {
    #[new]
    #[pyo3(signature = (phrases, *, whole_word = WholeWordArg::One(true), leetspeak = false))]
    fn new(
        py: Python<'_>,
        phrases: Vec<String>,
        whole_word: WholeWordArg,
        leetspeak: bool,
    ) -> PyResult<Self> {
        let build = || {
            let ww = match &whole_word {
                WholeWordArg::One(b) => WholeWord::All(*b),
                WholeWordArg::Each(v) => WholeWord::PerPhrase(v),
            };
            PhraseMatcher::new(&phrases, ww, leetspeak)
        };
        let inner = if phrases.len() >= DETACH_MIN_PHRASES {
            py.detach(build)
        } else {
            build()
        }
        .map_err(to_py)?;
        Ok(Self {
            inner: Arc::new(inner),
        })
    }

    fn __len__(&self) -> usize {
        self.inner.len()
    }

    /// The normalised form of phrase `index` (what is actually searched for).
    fn normalized_phrase(&self, index: usize) -> PyResult<String> {
        self.inner
            .normalized_phrase(index)
            .map(str::to_owned)
            .ok_or_else(|| {
                pyo3::exceptions::PyIndexError::new_err(format!(
                    "phrase index {index} out of range for {} phrases",
                    self.inner.len()
                ))
            })
    }

    /// "dfa" or "nfa": the automaton built for this set.
    #[getter]
    fn engine(&self) -> &'static str {
        self.inner.engine_kind()
    }

    /// Approximate heap bytes held by the compiled set.
    #[getter]
    fn memory_usage(&self) -> usize {
        self.inner.memory_usage()
    }

    /// All (overlapping) matches, sorted by `(end, start, phrase_index)`.
    fn find_all(&self, py: Python<'_>, text: &str) -> Vec<MatchTuple> {
        let found = if text.len() >= DETACH_MIN_BYTES {
            py.detach(|| self.inner.find_all(text))
        } else {
            self.inner.find_all(text)
        };
        tuples(found)
    }

    fn stream(&self) -> PyMatchStream {
        PyMatchStream {
            inner: self.inner.stream(),
        }
    }

    fn __repr__(&self) -> String {
        format!(
            "PhraseMatcher(<{} phrases>, engine={:?})",
            self.inner.len(),
            self.inner.engine_kind()
        )
    }
}

/// One stream over a `PhraseMatcher`: feed chunks, get matches with absolute char offsets.
#[pyclass(module = "checkstream._core", name = "MatchStream")]
pub struct PyMatchStream {
    inner: MatchStream,
}

#[pymethods]
impl PyMatchStream {
    fn feed(&mut self, py: Python<'_>, text: &str) -> PyResult<Vec<MatchTuple>> {
        let found = if text.len() >= DETACH_MIN_BYTES {
            let inner = &mut self.inner;
            py.detach(|| inner.feed(text))
        } else {
            self.inner.feed(text)
        };
        found.map(tuples).map_err(to_py)
    }

    fn feed_bytes(&mut self, data: &[u8]) -> PyResult<Vec<MatchTuple>> {
        self.inner.feed_bytes(data).map(tuples).map_err(to_py)
    }

    fn finish(&mut self) -> PyResult<Vec<MatchTuple>> {
        self.inner.finish().map(tuples).map_err(to_py)
    }

    #[getter]
    fn pending(&self) -> usize {
        self.inner.pending()
    }

    #[getter]
    fn position(&self) -> usize {
        self.inner.position()
    }

    #[getter]
    fn finished(&self) -> bool {
        self.inner.is_finished()
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyPhraseMatcher>()?;
    m.add_class::<PyMatchStream>()
}
