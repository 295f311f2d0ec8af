//! Local token counting with the o200k_base tokenizer (count_tokens endpoints, the emulated max-tokens cap).

use std::sync::OnceLock;

use tiktoken_rs::CoreBPE;

fn bpe() -> Option<&'static CoreBPE> {
    static BPE: OnceLock<Option<CoreBPE>> = OnceLock::new();
    BPE.get_or_init(|| tiktoken_rs::o200k_base().ok()).as_ref()
}

/// Tokens in `text` (o200k_base); falls back to 4 bytes per token if the tokenizer is unavailable.
pub fn count(text: &str) -> u64 {
    match bpe() {
        Some(b) => b.encode_ordinary(text).len() as u64,
        None => dialects::limits::estimate_tokens(text),
    }
}

/// Load the tokenizer ahead of the first request that needs it.
pub fn warm_up() {
    let _ = bpe();
}

#[cfg(test)]
mod tests {
    #[test]
    fn counts_words() {
        assert_eq!(super::count("hello world"), 2);
    }
}
