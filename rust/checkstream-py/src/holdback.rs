//! Python binding of the holdback buffer (`checkstream._core.HoldbackBuffer`).
//!
//! One push is one token; the work per call is a few hundred nanoseconds, so the GIL is kept.

use checkstream_core::holdback::HoldbackBuffer;
use checkstream_core::CoreError;
use pyo3::prelude::*;

use crate::errors::to_py;
use crate::matcher::{tuples, MatchTuple, PyPhraseMatcher};

fn offset(name: &str, value: i64) -> PyResult<usize> {
    usize::try_from(value).map_err(|_| {
        to_py(CoreError::InvalidArgument(format!(
            "{name} must be a non-negative char offset, got {value}"
        )))
    })
}

/// Per-stream buffer that releases only the text that is final (see the module docs in the core).
#[pyclass(module = "checkstream._core", name = "HoldbackBuffer")]
pub struct PyHoldbackBuffer {
    inner: HoldbackBuffer,
}

#[pymethods]
impl PyHoldbackBuffer {
    #[new]
    #[pyo3(signature = (holdback = 16, matcher = None))]
    fn new(holdback: i64, matcher: Option<PyRef<'_, PyPhraseMatcher>>) -> PyResult<Self> {
        let holdback = offset("holdback", holdback)?;
        let inner =
            HoldbackBuffer::new(holdback, matcher.map(|m| m.inner.clone())).map_err(to_py)?;
        Ok(Self { inner })
    }

    /// One token in; `(released_text, new_matches)` out.
    fn push(&mut self, text: &str) -> PyResult<(String, Vec<MatchTuple>)> {
        let (out, found) = self.inner.push(text).map_err(to_py)?;
        Ok((out, tuples(found)))
    }

    fn redact(&mut self, start: i64, end: i64, replacement: &str) -> PyResult<()> {
        let (s, e) = (offset("start", start)?, offset("end", end)?);
        self.inner.redact(s, e, replacement).map_err(to_py)
    }

    #[pyo3(signature = (position))]
    fn hold_from(&mut self, position: Option<i64>) -> PyResult<()> {
        let p = position.map(|p| offset("position", p)).transpose()?;
        self.inner.hold_from(p);
        Ok(())
    }

    fn release(&mut self) -> PyResult<String> {
        self.inner.release().map_err(to_py)
    }

    fn finish(&mut self) -> PyResult<Vec<MatchTuple>> {
        self.inner.finish().map(tuples).map_err(to_py)
    }

    fn flush(&mut self) -> PyResult<String> {
        self.inner.flush().map_err(to_py)
    }

    fn stop(&mut self) {
        self.inner.stop();
    }

    #[getter]
    fn released_chars(&self) -> usize {
        self.inner.released_chars()
    }

    #[getter]
    fn held_text(&self) -> &str {
        self.inner.held_text()
    }

    #[getter]
    fn stopped(&self) -> bool {
        self.inner.is_stopped()
    }

    /// Chars pushed so far.
    #[getter]
    fn position(&self) -> usize {
        self.inner.position()
    }

    #[getter]
    fn holdback(&self) -> usize {
        self.inner.holdback()
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyHoldbackBuffer>()
}
