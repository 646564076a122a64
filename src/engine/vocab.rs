//! The model's vocabulary as bytes: token text for log probabilities, `/detokenize`, and id bounds.

use super::{EngineError, FillInMiddle, TokenAlternative};

/// A token of the vocabulary: ordinary text bytes, or a special token known by its name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    Text(Vec<u8>),
    Special(String),
}

#[derive(Debug, Clone, Default)]
pub struct Vocabulary {
    pieces: Vec<Piece>,
    /// Tokens that end a turn; their (empty) text is never streamed.
    end_of_sequence: Vec<u32>,
}

impl Vocabulary {
    pub fn new(pieces: Vec<Piece>, end_of_sequence: Vec<u32>) -> Self {
        Vocabulary {
            pieces,
            end_of_sequence,
        }
    }

    pub fn len(&self) -> usize {
        self.pieces.len()
    }

    pub fn is_empty(&self) -> bool {
        self.pieces.is_empty()
    }

    /// The longest piece in bytes (a special token by its name): the most text one token stands for.
    pub fn longest_piece_bytes(&self) -> usize {
        self.pieces
            .iter()
            .map(|piece| match piece {
                Piece::Text(bytes) => bytes.len(),
                Piece::Special(name) => name.len(),
            })
            .max()
            .unwrap_or(0)
    }

    pub fn is_end_of_sequence(&self, token: u32) -> bool {
        self.end_of_sequence.contains(&token)
    }

    /// The bytes a token adds to generated text (none for special tokens, as the engine streams them).
    pub fn text_bytes(&self, token: u32) -> &[u8] {
        match self.pieces.get(token as usize) {
            Some(Piece::Text(bytes)) => bytes,
            _ => &[],
        }
    }

    /// A token as OpenAI's logprobs show it: its text (special tokens by name) and that text's bytes.
    pub fn alternative(&self, token: u32, logprob: f32) -> TokenAlternative {
        let bytes = match self.pieces.get(token as usize) {
            Some(Piece::Text(bytes)) => bytes.clone(),
            Some(Piece::Special(name)) => name.as_bytes().to_vec(),
            None => Vec::new(),
        };
        TokenAlternative {
            token: String::from_utf8_lossy(&bytes).into_owned(),
            bytes,
            logprob,
        }
    }

    /// The text of a token id sequence, special tokens written by name (as `/detokenize` returns it).
    pub fn decode(&self, tokens: &[u32]) -> Result<String, EngineError> {
        let mut bytes = Vec::new();
        for &token in tokens {
            match self.pieces.get(token as usize) {
                Some(Piece::Text(piece)) => bytes.extend_from_slice(piece),
                Some(Piece::Special(name)) => bytes.extend_from_slice(name.as_bytes()),
                None => {
                    return Err(EngineError::Rejected(format!(
                        "token id {token} is outside the vocabulary (0..{})",
                        self.pieces.len()
                    )))
                }
            }
        }
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }

    fn has_special(&self, name: &str) -> bool {
        self.pieces
            .iter()
            .any(|p| matches!(p, Piece::Special(n) if n == name))
    }

    /// The fill-in-the-middle tokens, when the vocabulary has a known set (StarCoder/SmolLM, Qwen/CodeLlama).
    pub fn fill_in_middle(&self) -> Option<FillInMiddle> {
        const SETS: [[&str; 3]; 2] = [
            ["<fim_prefix>", "<fim_suffix>", "<fim_middle>"],
            ["<|fim_prefix|>", "<|fim_suffix|>", "<|fim_middle|>"],
        ];
        SETS.iter()
            .find(|set| set.iter().all(|name| self.has_special(name)))
            .map(|[prefix, suffix, middle]| FillInMiddle {
                prefix: prefix.to_string(),
                suffix: suffix.to_string(),
                middle: middle.to_string(),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vocabulary() -> Vocabulary {
        Vocabulary::new(
            vec![
                Piece::Special("<|endoftext|>".into()),
                Piece::Text(b" the".to_vec()),
                Piece::Text(vec![0xC3]),
                Piece::Text(vec![0xA9]),
                Piece::Special("<fim_prefix>".into()),
            ],
            vec![0],
        )
    }

    #[test]
    fn decoding_joins_bytes_and_names_special_tokens() {
        let v = vocabulary();
        assert_eq!(v.decode(&[1, 2, 3, 0]).unwrap(), " theé<|endoftext|>");
        assert!(v.decode(&[5]).is_err());
        assert_eq!(v.text_bytes(0), b"");
        assert_eq!(v.alternative(2, -1.0).bytes, vec![0xC3]);
        assert!(v.is_end_of_sequence(0));
        assert_eq!(v.fill_in_middle(), None, "a partial set is no set");
    }
}
