//! Python binding of the text normaliser (`checkstream._core.Normalizer`).

use checkstream_core::normalize::Normalizer;
use pyo3::prelude::*;

/// Texts longer than this (bytes) are folded with the GIL released (about 10 µs of work).
pub(crate) const DETACH_MIN_BYTES: usize = 4096;

/// Per-code-point canonical form for matching (NFKC fold, case fold, invisible characters and
/// combining marks dropped, confusable skeleton, optional leetspeak, whitespace runs collapsed
/// to one space).
#[pyclass(module = "checkstream._core", name = "Normalizer", frozen)]
pub struct PyNormalizer {
    inner: Normalizer,
}

#[pymethods]
impl PyNormalizer {
    #[new]
    #[pyo3(signature = (*, leetspeak = false))]
    fn new(leetspeak: bool) -> Self {
        Self {
            inner: Normalizer::new(leetspeak),
        }
    }

    #[getter]
    fn leetspeak(&self) -> bool {
        self.inner.leetspeak()
    }

    fn normalize(&self, py: Python<'_>, text: &str) -> String {
        if text.len() >= DETACH_MIN_BYTES {
            py.detach(|| self.inner.normalize(text))
        } else {
            self.inner.normalize(text)
        }
    }

    /// `(normalised, offsets)`: `offsets[i]` is the index in `text` of the char that produced
    /// normalised char `i` (for a collapsed whitespace run, its first char).
    fn normalize_with_offsets(&self, py: Python<'_>, text: &str) -> (String, Vec<usize>) {
        if text.len() >= DETACH_MIN_BYTES {
            py.detach(|| self.inner.normalize_with_offsets(text))
        } else {
            self.inner.normalize_with_offsets(text)
        }
    }

    fn __repr__(&self) -> String {
        let leet = if self.inner.leetspeak() {
            "True"
        } else {
            "False"
        };
        format!("Normalizer(leetspeak={leet})")
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyNormalizer>()
}
