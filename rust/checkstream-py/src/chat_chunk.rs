//! Python binding of the chat-chunk splice (`checkstream._core.ChatChunkSplicer`).

use checkstream_core::chat_chunk::{content_chunk, push_json_string};
use checkstream_core::CoreError;
use pyo3::prelude::*;
use pyo3::types::PyBytes;

use crate::errors::to_py;

/// Per-stream: `parse` recognises the usual one-content chunk and keeps its envelope;
/// `emit` writes that envelope around new text as one SSE event.
#[pyclass(module = "checkstream._core", name = "ChatChunkSplicer")]
#[derive(Default)]
pub struct PyChatChunkSplicer {
    /// The last recognised event's JSON without its content literal, and where that was.
    template: String,
    cut: usize,
    ready: bool,
}

#[pymethods]
impl PyChatChunkSplicer {
    #[new]
    fn new() -> Self {
        Self::default()
    }

    /// `(choice index, content)` if `data` is the usual chunk (its envelope is kept for
    /// `emit`), else None (and the previous envelope is forgotten).
    fn parse(&mut self, data: &str) -> Option<(u32, String)> {
        self.template.clear();
        self.ready = false;
        let c = content_chunk(data)?;
        self.template.push_str(c.prefix);
        self.cut = c.prefix.len();
        self.template.push_str(c.suffix);
        self.ready = true;
        Some((c.index, c.content))
    }

    /// `data: <the last parsed chunk with `text` as its content>\n\n`.
    fn emit<'py>(&self, py: Python<'py>, text: &str) -> PyResult<Bound<'py, PyBytes>> {
        if !self.ready {
            return Err(to_py(CoreError::InvalidState(
                "emit() needs a chunk that parse() recognised".into(),
            )));
        }
        let mut out = String::with_capacity(self.template.len() + text.len() + 16);
        out.push_str("data: ");
        out.push_str(&self.template[..self.cut]);
        push_json_string(&mut out, text);
        out.push_str(&self.template[self.cut..]);
        out.push_str("\n\n");
        Ok(PyBytes::new(py, out.as_bytes()))
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyChatChunkSplicer>()
}
