//! Stop sequences cut from generated text as it streams: nothing at or after a stop string reaches the client.
//!
//! The engine stops at stop strings but does not trim streamed text (mistral.rs 0.8.1), and a stop string can
//! span several tokens, so text that could be the start of a stop string is held back until it is decided.

/// What to send after a piece of text has been pushed.
#[derive(Debug, PartialEq, Eq)]
pub struct Filtered {
    /// Text that is certainly not part of a stop string.
    pub emit: String,
    /// True once a stop string was found: the choice is finished, `emit` ends right before it.
    pub stopped: bool,
}

#[derive(Debug, Default)]
pub struct StopFilter {
    stops: Vec<String>,
    held: String,
    stopped: bool,
}

impl StopFilter {
    pub fn new(stops: Vec<String>) -> Self {
        StopFilter {
            stops: stops.into_iter().filter(|s| !s.is_empty()).collect(),
            held: String::new(),
            stopped: false,
        }
    }

    pub fn push(&mut self, text: &str) -> Filtered {
        if self.stopped {
            return Filtered {
                emit: String::new(),
                stopped: true,
            };
        }
        if self.stops.is_empty() {
            return Filtered {
                emit: text.to_string(),
                stopped: false,
            };
        }
        self.held.push_str(text);
        let first_match = self
            .stops
            .iter()
            .filter_map(|stop| self.held.find(stop.as_str()))
            .min();
        if let Some(at) = first_match {
            self.stopped = true;
            let emit = self.held[..at].to_string();
            self.held.clear();
            return Filtered {
                emit,
                stopped: true,
            };
        }
        let keep = self.longest_partial_suffix();
        let emit = self.held[..self.held.len() - keep].to_string();
        self.held.drain(..self.held.len() - keep);
        Filtered {
            emit,
            stopped: false,
        }
    }

    /// Text still held back when the sequence ended without reaching a stop string.
    pub fn flush(&mut self) -> String {
        std::mem::take(&mut self.held)
    }

    /// Length of the longest suffix of the held text that is a proper prefix of some stop string.
    fn longest_partial_suffix(&self) -> usize {
        let held = self.held.as_str();
        held.char_indices()
            .map(|(i, _)| i)
            .find(|&i| {
                let suffix = &held[i..];
                self.stops
                    .iter()
                    .any(|stop| stop.len() > suffix.len() && stop.starts_with(suffix))
            })
            .map_or(0, |i| held.len() - i)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(stops: &[&str], pieces: &[&str]) -> (String, bool) {
        let mut filter = StopFilter::new(stops.iter().map(|s| s.to_string()).collect());
        let mut out = String::new();
        for piece in pieces {
            let f = filter.push(piece);
            out.push_str(&f.emit);
            if f.stopped {
                return (out, true);
            }
        }
        out.push_str(&filter.flush());
        (out, false)
    }

    #[test]
    fn stop_split_across_pieces_is_never_emitted() {
        assert_eq!(
            run(&["END"], &["Hello E", "N", "D tail"]),
            ("Hello ".into(), true)
        );
        assert_eq!(run(&["\n\n"], &["a\n", "\nb"]), ("a".into(), true));
    }

    #[test]
    fn held_text_that_turns_out_not_to_stop_is_released() {
        assert_eq!(
            run(&["END"], &["Hello E", "N", "d"]),
            ("Hello ENd".into(), false)
        );
        let mut filter = StopFilter::new(vec!["END".into()]);
        assert_eq!(filter.push("xEN").emit, "x");
        assert_eq!(filter.push("x").emit, "ENx");
    }

    #[test]
    fn earliest_of_several_stops_wins() {
        assert_eq!(
            run(&["world", "lo"], &["hello world"]),
            ("hel".into(), true)
        );
    }

    #[test]
    fn no_stops_passes_everything_and_multibyte_is_safe() {
        assert_eq!(run(&[], &["a", "b"]), ("ab".into(), false));
        assert_eq!(run(&["éé"], &["caféé!"]), ("caf".into(), true));
        assert_eq!(
            run(&["日本"], &["こんにちは日", "x"]),
            ("こんにちは日x".into(), false)
        );
    }
}
