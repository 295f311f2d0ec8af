//! Anthropic Messages dialect: golden request translations, golden SSE streams, the thinking signature round
//! trip, and a property test holding the encoder to the invariants of the Anthropic SDK stream accumulators.

mod property;
mod render;
mod requests;
mod signature;
mod streams;
mod support;
