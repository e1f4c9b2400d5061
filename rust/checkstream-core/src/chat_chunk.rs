//! The usual OpenAI `chat.completion.chunk`, recognised and re-emitted without a JSON round trip.
//!
//! Almost every event of a streamed chat answer is one choice whose delta holds one piece of
//! answer text: `{..., "choices": [{"index": 0, "delta": {"content": "Hel"}, "logprobs": null,
//! "finish_reason": null}]}`. The proxy must judge that text and send on what it may release,
//! in the same envelope. Decoding the event into Python objects and encoding a new one costs
//! more than the rest of the proxy's work on a chunk, so for this one shape the event is
//! validated here and the released text is spliced into the upstream's own bytes in place of
//! the content string.
//!
//! [`content_chunk`] is deliberately strict: anything else (another key in the choice or the
//! delta, a duplicate key anywhere on the path, an escaped key, a finish reason, logprobs, an
//! error, a multi-line event, more than one choice, empty content) returns `None`, and the
//! caller takes its general path. A splice can therefore never forward a field that the
//! general path would have judged or dropped: the only fields kept verbatim are the top-level
//! envelope fields (id, model, created, ...), which the general path forwards as they are too.

use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;
use std::fmt;

/// A recognised chunk: the choice index, the decoded content, and the event's JSON text on
/// either side of the content's string literal (quotes included in neither).
#[derive(Debug, PartialEq, Eq)]
pub struct ContentChunk<'a> {
    pub index: u32,
    pub content: String,
    pub prefix: &'a str,
    pub suffix: &'a str,
}

/// The members of one JSON object in document order, values unparsed. Keys must be plain
/// (borrowable, i.e. without escapes) and distinct; otherwise deserialisation fails, which
/// [`content_chunk`] turns into "not the usual shape".
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

/// `data` (one SSE event's data) as the usual one-content chunk, or `None` if it is anything
/// else (see the module docs).
pub fn content_chunk(data: &str) -> Option<ContentChunk<'_>> {
    // An SSE data field spanning several lines cannot be re-emitted as one `data:` line.
    if data.contains(['\n', '\r']) {
        return None;
    }
    let top = Members::parse(data)?;
    if top.get("error").is_some() {
        return None;
    }
    let choices: Vec<&RawValue> = serde_json::from_str(top.get("choices")?.get()).ok()?;
    let [choice] = choices.as_slice() else {
        return None;
    };
    let choice = Members::parse(choice.get())?;
    if !choice.keys_within(&["index", "delta", "logprobs", "finish_reason"])
        || !is_null_or_absent(choice.get("logprobs"))
        || !is_null_or_absent(choice.get("finish_reason"))
    {
        return None;
    }
    let index: u32 = serde_json::from_str(choice.get("index")?.get()).ok()?;
    let delta = Members::parse(choice.get("delta")?.get())?;
    let literal = match delta.0.as_slice() {
        [("content", v)] => v.get(),
        _ => return None,
    };
    // Not a string (null, a number, ...): the general path decides what that means.
    let content: String = serde_json::from_str(literal).ok()?;
    if content.is_empty() {
        return None;
    }
    // `literal` borrows from `data` (every parse above borrowed from its input), so its
    // position is a pointer difference.
    let start = offset_in(data, literal);
    let end = start + literal.len();
    Some(ContentChunk {
        index,
        content,
        prefix: &data[..start],
        suffix: &data[end..],
    })
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

    const USUAL: &str = r#"{"id":"c1","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"content":"Hel\"lo\u00e9"},"logprobs":null,"finish_reason":null}]}"#;

    #[test]
    fn the_usual_chunk_is_recognised_with_its_envelope() {
        let c = content_chunk(USUAL).unwrap();
        assert_eq!(c.index, 0);
        assert_eq!(c.content, "Hel\"loé");
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
        let c = content_chunk(d).unwrap();
        assert_eq!((c.index, c.content.as_str()), (2, "a"));
        assert_eq!(&d[c.prefix.len()..d.len() - c.suffix.len()], "\"a\"");
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
            assert!(content_chunk(d).is_none(), "accepted: {d}");
        }
    }

    #[test]
    fn json_strings_escape_what_json_requires() {
        let mut s = String::new();
        push_json_string(&mut s, "a\"b\\c\u{1}\té\u{2028}");
        assert_eq!(s, "\"a\\\"b\\\\c\\u0001\\té\u{2028}\"");
    }
}
