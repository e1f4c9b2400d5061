//! Python bindings of the text-delta splice (`checkstream._core.TextDeltaSplicer`) and of the
//! Responses text-delta writer (`checkstream._core.OutputTextDeltaWriter`).

use checkstream_core::text_delta::{
    output_text_delta, push_json_string, push_output_text_delta, text_delta, OutputTextDelta, Shape,
};
use checkstream_core::CoreError;
use pyo3::prelude::*;
use pyo3::types::PyBytes;

use crate::errors::to_py;

/// Per-stream: `parse` recognises the usual text event of one shape and keeps its envelope;
/// `emit` writes that envelope around new text as one SSE event.
#[pyclass(module = "checkstream._core", name = "TextDeltaSplicer")]
pub struct PyTextDeltaSplicer {
    shape: Shape,
    /// The SSE lines before `data: ` (an `event: ...` line for Anthropic).
    head: String,
    /// The last recognised event's JSON without its text literal, and where that was.
    template: String,
    cut: usize,
    ready: bool,
}

#[pymethods]
impl PyTextDeltaSplicer {
    /// `shape`: "chat" (OpenAI chat chunks), "completions" (legacy completion chunks) or
    /// "messages" (Anthropic content block deltas).
    #[new]
    fn new(shape: &str) -> PyResult<Self> {
        let (shape, head) = match shape {
            "chat" => (Shape::ChatContent, ""),
            "completions" => (Shape::CompletionText, ""),
            "messages" => (Shape::MessagesText, "event: content_block_delta\n"),
            other => {
                return Err(to_py(CoreError::InvalidArgument(format!(
                    "unknown shape {other:?}: expected \"chat\", \"completions\" or \"messages\""
                ))))
            }
        };
        Ok(Self {
            shape,
            head: head.to_string(),
            template: String::new(),
            cut: 0,
            ready: false,
        })
    }

    /// `(index, text)` if `data` is the usual text event (its envelope is kept for `emit`),
    /// else None (and the previous envelope is forgotten).
    fn parse(&mut self, data: &str) -> Option<(u32, String)> {
        self.template.clear();
        self.ready = false;
        let d = text_delta(self.shape, data)?;
        self.template.push_str(d.prefix);
        self.cut = d.prefix.len();
        self.template.push_str(d.suffix);
        self.ready = true;
        Some((d.index, d.text))
    }

    /// The last parsed event with `text` in place of its text, as SSE bytes.
    fn emit<'py>(&self, py: Python<'py>, text: &str) -> PyResult<Bound<'py, PyBytes>> {
        if !self.ready {
            return Err(to_py(CoreError::InvalidState(
                "emit() needs an event that parse() recognised".into(),
            )));
        }
        let mut out =
            String::with_capacity(self.head.len() + self.template.len() + text.len() + 16);
        out.push_str(&self.head);
        out.push_str("data: ");
        out.push_str(&self.template[..self.cut]);
        push_json_string(&mut out, text);
        out.push_str(&self.template[self.cut..]);
        out.push_str("\n\n");
        Ok(PyBytes::new(py, out.as_bytes()))
    }
}

/// Per-stream, for the Responses API: `parse` recognises the usual `response.output_text.delta`
/// and keeps where it goes; `emit` writes the event for new text with the proxy's own
/// sequence number.
#[pyclass(module = "checkstream._core", name = "OutputTextDeltaWriter")]
#[derive(Default)]
pub struct PyOutputTextDeltaWriter {
    last: Option<OutputTextDelta>,
}

#[pymethods]
impl PyOutputTextDeltaWriter {
    #[new]
    fn new() -> Self {
        Self::default()
    }

    /// `(item_id, output_index, content_index, text)` for the usual text delta, else None.
    fn parse(&mut self, data: &str) -> Option<(String, u32, u32, String)> {
        self.last = output_text_delta(data);
        let d = self.last.as_ref()?;
        Some((
            d.item_id.clone(),
            d.output_index,
            d.content_index,
            d.text.clone(),
        ))
    }

    /// The last parsed delta's event with `text` and `sequence_number`, as SSE bytes.
    fn emit<'py>(
        &self,
        py: Python<'py>,
        text: &str,
        sequence_number: u64,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let Some(d) = &self.last else {
            return Err(to_py(CoreError::InvalidState(
                "emit() needs an event that parse() recognised".into(),
            )));
        };
        let mut out = String::with_capacity(160 + d.item_id.len() + text.len());
        push_output_text_delta(&mut out, d, text, sequence_number);
        Ok(PyBytes::new(py, out.as_bytes()))
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyTextDeltaSplicer>()?;
    m.add_class::<PyOutputTextDeltaWriter>()
}
