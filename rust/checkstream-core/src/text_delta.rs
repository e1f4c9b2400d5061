//! The usual streamed text event, recognised and re-emitted without a JSON round trip.
//!
//! Almost every event of a streamed answer carries one piece of answer text:
//! - OpenAI chat: `{..., "choices": [{"index": 0, "delta": {"content": "Hel"}, "logprobs": null,
//!   "finish_reason": null}]}` ([`Shape::ChatContent`]), and legacy completions, whose choice
//!   holds `"text": "Hel"` instead of the delta ([`Shape::CompletionText`]);
//! - Anthropic messages: `{"type": "content_block_delta", "index": 0, "delta": {"type":
//!   "text_delta", "text": "Hel"}}`, or a `thinking_delta` with `thinking` ([`Shape::MessagesText`]);
//! - OpenAI Responses: `response.output_text.delta`, which is rewritten rather than spliced
//!   ([`output_text_delta`]: the proxy renumbers every event it sends).
//!
//! The proxy must judge that text and send on what it may release, in the same envelope.
//! Decoding the event into Python objects and encoding a new one costs more than the rest of
//! the proxy's work on a chunk, so for these shapes the event is validated here and the
//! released text is spliced into the upstream's own bytes in place of the text's string
//! literal.
//!
//! [`text_delta`] is deliberately strict: anything else (another key in the Anthropic event,
//! another key with a non-null value in the chat choice or delta, a duplicate key anywhere on
//! the path, an escaped key, a finish reason, logprobs, an error, a multi-line event, more than
//! one choice, empty text) returns `None`, and the caller takes its general path. A splice can
//! therefore never forward text that the general path would have judged or dropped: the only
//! fields kept verbatim are the chat chunk's top-level envelope fields (id, model, created,
//! ...), which the general path forwards as they are too, and nulls.

use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;
use std::fmt;

/// Which event shape to recognise.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// An OpenAI `chat.completion.chunk` with one choice whose delta is only `content`.
    ChatContent,
    /// An OpenAI legacy `text_completion` chunk with one choice carrying only `text`.
    CompletionText,
    /// An Anthropic `content_block_delta` whose delta is a `text_delta` or `thinking_delta`.
    MessagesText,
}

/// A recognised event: the choice or content block index, the decoded text, and the event's
/// JSON text on either side of the text's string literal (quotes included in neither).
#[derive(Debug, PartialEq, Eq)]
pub struct TextDelta<'a> {
    pub index: u32,
    pub text: String,
    pub prefix: &'a str,
    pub suffix: &'a str,
}

/// The members of one JSON object in document order, values unparsed. Keys must be plain
/// (borrowable, i.e. without escapes) and distinct; otherwise deserialisation fails, which
/// [`text_delta`] turns into "not the usual shape".
struct Members<'a>(Vec<(&'a str, &'a RawValue)>);

impl<'a> Members<'a> {
    fn parse(json: &'a str) -> Option<Self> {
        serde_json::from_str(json).ok()
    }

    fn get(&self, key: &str) -> Option<&'a RawValue> {
        self.0.iter().find(|(k, _)| *k == key).map(|(_, v)| *v)
    }

    fn keys_within(&self, allowed: &[&str]) -> bool {
        self.0.iter().all(|(k, _)| allowed.contains(k))
    }

    /// Every key is one of `allowed` or has the value `null` (which carries no text: several
    /// OpenAI-compatible servers send e.g. `"stop_reason": null` or `"reasoning_content": null`
    /// on every chunk, and the general path forwards or drops such a null, never judges it).
    fn keys_within_or_null(&self, allowed: &[&str]) -> bool {
        self.0
            .iter()
            .all(|(k, v)| allowed.contains(k) || v.get() == "null")
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Members<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = Members<'a>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON object with distinct plain keys")
            }
            fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<Self::Value, M::Error> {
                let mut out: Vec<(&'a str, &'a RawValue)> = Vec::with_capacity(8);
                while let Some((k, v)) = map.next_entry::<&'de str, &'de RawValue>()? {
                    // JSON parsers differ on duplicate keys (first or last wins); a splice must
                    // never keep a value the general path did not see, so refuse them.
                    if out.iter().any(|(seen, _)| *seen == k) {
                        return Err(serde::de::Error::custom("duplicate key"));
                    }
                    out.push((k, v));
                }
                Ok(Members(out))
            }
        }
        d.deserialize_map(V(std::marker::PhantomData))
    }
}

fn is_null_or_absent(v: Option<&RawValue>) -> bool {
    v.map_or(true, |v| v.get() == "null")
}

/// Byte offset of `inner` (a sub-slice of `outer`) within `outer`.
fn offset_in(outer: &str, inner: &str) -> usize {
    inner.as_ptr() as usize - outer.as_ptr() as usize
}

/// `data` (one SSE event's data) as the usual text event of `shape`, or `None` if it is
/// anything else (see the module docs).
pub fn text_delta(shape: Shape, data: &str) -> Option<TextDelta<'_>> {
    // An SSE data field spanning several lines cannot be re-emitted as one `data:` line.
    if data.contains(['\n', '\r']) {
        return None;
    }
    let (index, literal) = match shape {
        Shape::ChatContent => chat_content(data)?,
        Shape::CompletionText => completion_text(data)?,
        Shape::MessagesText => messages_text(data)?,
    };
    // Not a string (null, a number, ...): the general path decides what that means.
    let text: String = serde_json::from_str(literal).ok()?;
    if text.is_empty() {
        return None;
    }
    // `literal` borrows from `data` (every parse borrowed from its input), so its position is
    // a pointer difference.
    let start = offset_in(data, literal);
    let end = start + literal.len();
    Some(TextDelta {
        index,
        text,
        prefix: &data[..start],
        suffix: &data[end..],
    })
}

/// The one choice of a chat or completion chunk with no error, no finish reason and no
/// logprobs, whose keys are `fields` (or null), and its index.
fn only_choice<'a>(data: &'a str, fields: &[&str]) -> Option<(u32, Members<'a>)> {
    let top = Members::parse(data)?;
    if top.get("error").is_some() {
        return None;
    }
    let choices: Vec<&RawValue> = serde_json::from_str(top.get("choices")?.get()).ok()?;
    let [choice] = choices.as_slice() else {
        return None;
    };
    let choice = Members::parse(choice.get())?;
    if !choice.keys_within_or_null(fields)
        || !is_null_or_absent(choice.get("logprobs"))
        || !is_null_or_absent(choice.get("finish_reason"))
    {
        return None;
    }
    let index: u32 = serde_json::from_str(choice.get("index")?.get()).ok()?;
    Some((index, choice))
}

/// The choice index and the text's raw literal of the usual legacy completion chunk.
fn completion_text(data: &str) -> Option<(u32, &str)> {
    let (index, choice) = only_choice(data, &["index", "text", "logprobs", "finish_reason"])?;
    Some((index, choice.get("text")?.get()))
}

/// The choice index and the content's raw literal of the usual chat chunk.
fn chat_content(data: &str) -> Option<(u32, &str)> {
    let (index, choice) = only_choice(data, &["index", "delta", "logprobs", "finish_reason"])?;
    let delta = Members::parse(choice.get("delta")?.get())?;
    if !delta.keys_within_or_null(&["content"]) {
        return None;
    }
    Some((index, delta.get("content")?.get()))
}

/// The block index and the text's raw literal of an Anthropic text or thinking delta.
fn messages_text(data: &str) -> Option<(u32, &str)> {
    let top = Members::parse(data)?;
    if !top.keys_within(&["type", "index", "delta"])
        || top.get("type")?.get() != "\"content_block_delta\""
    {
        return None;
    }
    let index: u32 = serde_json::from_str(top.get("index")?.get()).ok()?;
    let delta = Members::parse(top.get("delta")?.get())?;
    let (kind, field) = match delta.0.as_slice() {
        [("type", t), (f, v)] | [(f, v), ("type", t)] => (t.get(), (*f, v.get())),
        _ => return None,
    };
    match (kind, field) {
        ("\"text_delta\"", ("text", v)) | ("\"thinking_delta\"", ("thinking", v)) => {
            Some((index, v))
        }
        _ => None,
    }
}

/// An OpenAI Responses `response.output_text.delta` event: where its text goes, and the text.
#[derive(Debug, PartialEq, Eq)]
pub struct OutputTextDelta {
    pub item_id: String,
    pub output_index: u32,
    pub content_index: u32,
    pub text: String,
}

const OUTPUT_TEXT_DELTA: &str = "response.output_text.delta";

/// `data` as the usual Responses text delta: `type` `response.output_text.delta`, a plain
/// `item_id`, the two indexes, non-empty `delta`, no logprobs (absent or `[]`) and nothing else
/// but `sequence_number` and `obfuscation` (which the proxy renumbers and drops on every event
/// it writes). `None` for anything else.
///
/// Unlike the other shapes this one is rewritten, not spliced: the proxy numbers its own events,
/// so [`push_output_text_delta`] writes the event the general path would write.
pub fn output_text_delta(data: &str) -> Option<OutputTextDelta> {
    let top = Members::parse(data)?;
    let allowed = [
        "type",
        "item_id",
        "output_index",
        "content_index",
        "delta",
        "logprobs",
        "sequence_number",
        "obfuscation",
    ];
    if !top.keys_within(&allowed) || top.get("type")?.get() != "\"response.output_text.delta\"" {
        return None;
    }
    if top.get("logprobs").is_some_and(|v| v.get() != "[]") {
        return None;
    }
    let text: String = serde_json::from_str(top.get("delta")?.get()).ok()?;
    if text.is_empty() {
        return None;
    }
    Some(OutputTextDelta {
        item_id: serde_json::from_str(top.get("item_id")?.get()).ok()?,
        output_index: serde_json::from_str(top.get("output_index")?.get()).ok()?,
        content_index: serde_json::from_str(top.get("content_index")?.get()).ok()?,
        text,
    })
}

/// The SSE event (`event:` and `data:` lines) of a Responses text delta carrying `text`, with
/// `d`'s addresses and `sequence_number`, appended to `out`.
pub fn push_output_text_delta(
    out: &mut String,
    d: &OutputTextDelta,
    text: &str,
    sequence_number: u64,
) {
    use std::fmt::Write;
    out.push_str("event: ");
    out.push_str(OUTPUT_TEXT_DELTA);
    out.push_str("\ndata: {\"type\":\"");
    out.push_str(OUTPUT_TEXT_DELTA);
    out.push_str("\",\"item_id\":");
    push_json_string(out, &d.item_id);
    // Writing to a String cannot fail.
    let _ = write!(
        out,
        ",\"output_index\":{},\"content_index\":{},\"delta\":",
        d.output_index, d.content_index
    );
    push_json_string(out, text);
    let _ = write!(
        out,
        ",\"logprobs\":[],\"sequence_number\":{sequence_number}}}\n\n"
    );
}

/// `text` as a JSON string literal (quotes, backslashes and control characters escaped;
/// everything else as UTF-8), appended to `out`.
pub fn push_json_string(out: &mut String, text: &str) {
    // Serialising a &str into a String cannot fail.
    let literal = serde_json::to_string(text).expect("a str always serialises");
    out.push_str(&literal);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chat(d: &str) -> Option<TextDelta<'_>> {
        text_delta(Shape::ChatContent, d)
    }

    const USUAL: &str = r#"{"id":"c1","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"content":"Hel\"lo\u00e9"},"logprobs":null,"finish_reason":null}]}"#;

    #[test]
    fn the_usual_chunk_is_recognised_with_its_envelope() {
        let c = chat(USUAL).unwrap();
        assert_eq!(c.index, 0);
        assert_eq!(c.text, "Hel\"loé");
        assert!(c.prefix.ends_with(r#""delta":{"content":"#));
        assert!(c.suffix.starts_with(r#"},"logprobs""#));
        let mut out = c.prefix.to_string();
        push_json_string(&mut out, "X\n\"");
        out.push_str(c.suffix);
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["choices"][0]["delta"]["content"], "X\n\"");
        assert_eq!(v["id"], "c1");
    }

    #[test]
    fn whitespace_and_missing_optional_keys_are_fine() {
        let d = r#" { "choices" : [ { "delta" : { "content" : "a" } , "index" : 2 } ] } "#;
        let c = chat(d).unwrap();
        assert_eq!((c.index, c.text.as_str()), (2, "a"));
        assert_eq!(&d[c.prefix.len()..d.len() - c.suffix.len()], "\"a\"");
    }

    #[test]
    fn extra_keys_with_null_values_are_fine() {
        let d = r#"{"choices":[{"index":0,"delta":{"content":"a","reasoning_content":null},"stop_reason":null}]}"#;
        let c = chat(d).unwrap();
        assert_eq!((c.index, c.text.as_str()), (0, "a"));
        // ... but not a null content, nor a non-null extra.
        assert!(chat(r#"{"choices":[{"index":0,"delta":{"content":null,"x":null}}]}"#).is_none());
        assert!(
            chat(r#"{"choices":[{"index":0,"delta":{"content":"a"},"stop_reason":0}]}"#).is_none()
        );
    }

    #[test]
    fn every_other_shape_is_refused() {
        let refused = [
            // a finish reason, logprobs, an extra choice key, an extra delta key
            r#"{"choices":[{"index":0,"delta":{"content":"a"},"finish_reason":"stop"}]}"#,
            r#"{"choices":[{"index":0,"delta":{"content":"a"},"logprobs":{"content":[]}}]}"#,
            r#"{"choices":[{"index":0,"delta":{"content":"a"},"content_filter_results":{}}]}"#,
            r#"{"choices":[{"index":0,"delta":{"content":"a","role":"assistant"}}]}"#,
            // duplicates, on every level
            r#"{"choices":[{"index":0,"delta":{"content":"a","content":"b"}}]}"#,
            r#"{"choices":[{"index":0,"index":1,"delta":{"content":"a"}}]}"#,
            r#"{"choices":[],"choices":[{"index":0,"delta":{"content":"a"}}]}"#,
            // escaped keys, errors, two choices, no choice, empty or non-string content
            r#"{"choices":[{"index":0,"delta":{"cont\u0065nt":"a"}}]}"#,
            r#"{"error":{"message":"x"},"choices":[{"index":0,"delta":{"content":"a"}}]}"#,
            r#"{"choices":[{"index":0,"delta":{"content":"a"}},{"index":1,"delta":{"content":"b"}}]}"#,
            r#"{"choices":[]}"#,
            r#"{"choices":[{"index":0,"delta":{"content":""}}]}"#,
            r#"{"choices":[{"index":0,"delta":{"content":null}}]}"#,
            r#"{"choices":[{"index":-1,"delta":{"content":"a"}}]}"#,
            r#"{"choices":[{"index":0.0,"delta":{"content":"a"}}]}"#,
            // not JSON, not an object, trailing bytes, a lone surrogate, two lines
            r#"{"choices":[{"index":0,"delta":{"content":"a"}}]"#,
            r#"[1]"#,
            r#"{"choices":[{"index":0,"delta":{"content":"a"}}]} x"#,
            r#"{"choices":[{"index":0,"delta":{"content":"\ud800"}}]}"#,
            "{\"choices\":[{\"index\":0,\n\"delta\":{\"content\":\"a\"}}]}",
        ];
        for d in refused {
            assert!(chat(d).is_none(), "accepted: {d}");
        }
    }

    #[test]
    fn legacy_completion_chunks_are_recognised() {
        let d = r#"{"id":"c","object":"text_completion","choices":[{"text":" hi","index":0,"logprobs":null,"finish_reason":null,"stop_reason":null}],"model":"m"}"#;
        let c = text_delta(Shape::CompletionText, d).unwrap();
        assert_eq!((c.index, c.text.as_str()), (0, " hi"));
        for refused in [
            r#"{"choices":[{"text":" hi","index":0,"finish_reason":"length"}]}"#,
            r#"{"choices":[{"text":" hi","index":0,"logprobs":{"tokens":[]}}]}"#,
            r#"{"choices":[{"text":"","index":0}]}"#,
            r#"{"choices":[{"text":" hi","index":0,"delta":{}}]}"#,
        ] {
            assert!(
                text_delta(Shape::CompletionText, refused).is_none(),
                "{refused}"
            );
        }
        assert!(chat(d).is_none());
    }

    #[test]
    fn anthropic_text_and_thinking_deltas_are_recognised() {
        let d = r#"{"type":"content_block_delta","index":1,"delta":{"type":"text_delta","text":"Hi \u00e9"}}"#;
        let c = text_delta(Shape::MessagesText, d).unwrap();
        assert_eq!((c.index, c.text.as_str()), (1, "Hi é"));
        assert!(c.suffix == "}}" && c.prefix.ends_with(r#""text":"#));
        let d = r#"{"index":0,"delta":{"thinking":"hmm","type":"thinking_delta"},"type":"content_block_delta"}"#;
        let c = text_delta(Shape::MessagesText, d).unwrap();
        assert_eq!((c.index, c.text.as_str()), (0, "hmm"));
        // The chat shape does not accept it, nor the reverse.
        assert!(chat(d).is_none());
        assert!(text_delta(Shape::MessagesText, USUAL).is_none());
    }

    #[test]
    fn other_anthropic_events_are_refused() {
        let refused = [
            r#"{"type":"content_block_delta","index":0,"delta":{"type":"input_json_delta","partial_json":"{"}}"#,
            r#"{"type":"content_block_delta","index":0,"delta":{"type":"signature_delta","signature":"x"}}"#,
            r#"{"type":"content_block_delta","index":0,"delta":{"type":"citations_delta","citation":{}}}"#,
            r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","thinking":"x"}}"#,
            r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"a","extra":1}}"#,
            r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":""}}"#,
            r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"a","text":"b"}}"#,
            r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"a"},"x":1}"#,
            r#"{"type":"content_block_start","index":0,"delta":{"type":"text_delta","text":"a"}}"#,
            r#"{"type":"content_block_delt\u0061","index":0,"delta":{"type":"text_delta","text":"a"}}"#,
            r#"{"type":"content_block_delta","delta":{"type":"text_delta","text":"a"}}"#,
        ];
        for d in refused {
            assert!(
                text_delta(Shape::MessagesText, d).is_none(),
                "accepted: {d}"
            );
        }
    }

    #[test]
    fn responses_text_deltas_are_recognised_and_rewritten() {
        let d = r#"{"type":"response.output_text.delta","item_id":"msg_1","output_index":0,"content_index":1,"delta":"Hi","logprobs":[],"sequence_number":7,"obfuscation":"xyz"}"#;
        let got = output_text_delta(d).unwrap();
        assert_eq!(
            got,
            OutputTextDelta {
                item_id: "msg_1".into(),
                output_index: 0,
                content_index: 1,
                text: "Hi".into()
            }
        );
        let mut out = String::new();
        push_output_text_delta(&mut out, &got, "Yo \"", 3);
        let (head, json) = out.split_once("\ndata: ").unwrap();
        assert_eq!(head, "event: response.output_text.delta");
        let v: serde_json::Value = serde_json::from_str(json.trim_end()).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"type": "response.output_text.delta", "item_id": "msg_1",
                "output_index": 0, "content_index": 1, "delta": "Yo \"", "logprobs": [],
                "sequence_number": 3})
        );
        for refused in [
            r#"{"type":"response.output_text.delta","item_id":"m","output_index":0,"content_index":0,"delta":"a","logprobs":[{"token":"a"}]}"#,
            r#"{"type":"response.output_text.delta","item_id":"m","output_index":0,"content_index":0,"delta":""}"#,
            r#"{"type":"response.output_text.delta","item_id":"m","output_index":0,"content_index":0,"delta":"a","x":1}"#,
            r#"{"type":"response.refusal.delta","item_id":"m","output_index":0,"content_index":0,"delta":"a"}"#,
            r#"{"type":"response.output_text.delta","item_id":"m","output_index":0,"delta":"a"}"#,
            r#"{"type":"response.output_text.delta","item_id":7,"output_index":0,"content_index":0,"delta":"a"}"#,
            r#"{"type":"response.output_text.delta","item_id":"m","output_index":0,"content_index":0,"delta":"a","delta":"b"}"#,
        ] {
            assert!(output_text_delta(refused).is_none(), "{refused}");
        }
    }

    #[test]
    fn json_strings_escape_what_json_requires() {
        let mut s = String::new();
        push_json_string(&mut s, "a\"b\\c\u{1}\té\u{2028}");
        assert_eq!(s, "\"a\\\"b\\\\c\\u0001\\té\u{2028}\"");
    }
}
