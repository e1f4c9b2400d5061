//! checkstream-core: the hot path of checkstream, with no Python in it.
//!
//! Pipeline for a streamed answer:
//! text delta -> [`normalize`] (canonical form + map back to the original) ->
//! [`matcher`] (one shared Aho-Corasick automaton, a tiny state per stream) ->
//! [`holdback`] (releases only the prefix that can no longer become a match).
//! For generation inside vLLM, [`masker`] walks an automaton over token ids and
//! names the next tokens that would complete a banned sequence.
//! [`text_delta`] recognises the usual streamed text event (OpenAI chat, Anthropic) so the
//! proxy can re-emit it with released text without a JSON round trip.

pub mod error;
pub mod holdback;
pub mod masker;
pub mod matcher;
pub mod normalize;
pub mod text_delta;

pub use error::CoreError;
