//! Wire types shared by chat and completions: stop sequences, stream options, usage, finish reasons.

use serde::{Deserialize, Serialize, Serializer};
use utoipa::ToSchema;

/// Up to 4 sequences where the API stops generating; the stop text is not returned.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum StopSequences {
    One(String),
    Many(Vec<String>),
}

impl StopSequences {
    pub fn into_vec(self) -> Vec<String> {
        match self {
            StopSequences::One(s) => vec![s],
            StopSequences::Many(v) => v,
        }
    }
}

/// Who is calling, for sticky routing between a weighted alias's versions: `safety_identifier` (OpenAI's
/// newer name) over `user`; an empty one names nobody.
pub fn caller_identity<'a>(
    safety_identifier: Option<&'a str>,
    user: Option<&'a str>,
) -> Option<&'a str> {
    safety_identifier.or(user).filter(|id| !id.is_empty())
}

/// Options for streaming responses; only read when `stream` is true.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
pub struct StreamOptions {
    /// When true, one extra chunk with empty `choices` and the request's `usage` comes right before `[DONE]`,
    /// and every other chunk carries `"usage": null`.
    #[serde(default)]
    pub include_usage: Option<bool>,
}

/// Token counts of one request, summed over all choices.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Usage {
    pub prompt_tokens: usize,
    pub completion_tokens: usize,
    pub total_tokens: usize,
}

impl Usage {
    pub fn new(prompt_tokens: usize, completion_tokens: usize) -> Self {
        Usage {
            prompt_tokens,
            completion_tokens,
            total_tokens: prompt_tokens + completion_tokens,
        }
    }
}

/// Why a choice stopped: `stop` (end of turn or a stop sequence), `length` (`max_tokens` or the context).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    Stop,
    Length,
    ToolCalls,
    ContentFilter,
}

impl FinishReason {
    pub fn as_str(self) -> &'static str {
        match self {
            FinishReason::Stop => "stop",
            FinishReason::Length => "length",
            FinishReason::ToolCalls => "tool_calls",
            FinishReason::ContentFilter => "content_filter",
        }
    }
}

/// The `usage` key of a streamed chunk: absent unless `stream_options.include_usage`, then `null` on every
/// chunk except the last one, which carries the totals.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ChunkUsage {
    #[default]
    Absent,
    Null,
    Totals(Usage),
}

impl ChunkUsage {
    pub fn is_absent(&self) -> bool {
        matches!(self, ChunkUsage::Absent)
    }
}

impl Serialize for ChunkUsage {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            ChunkUsage::Absent | ChunkUsage::Null => serializer.serialize_none(),
            ChunkUsage::Totals(usage) => usage.serialize(serializer),
        }
    }
}

/// Integer request fields as JSON Schema reads `integer`: `5` and `5.0` alike (Python clients send `50.0`
/// for `max_tokens = 0.5 * 100`), anything with a fraction or out of range refused with the field's name.
pub mod integer {
    use serde::de::{self, Deserializer, Unexpected, Visitor};

    struct Integer;

    impl Visitor<'_> for Integer {
        type Value = i64;

        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("an integer")
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<i64, E> {
            Ok(v)
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<i64, E> {
            i64::try_from(v).map_err(|_| E::invalid_value(Unexpected::Unsigned(v), &self))
        }
        fn visit_f64<E: de::Error>(self, v: f64) -> Result<i64, E> {
            // Integral and inside i64 with room: a JSON number just beyond either end reads as ±2^63.
            if v.fract() == 0.0 && v > -(2f64.powi(63)) && v < 2f64.powi(63) {
                Ok(v as i64)
            } else {
                Err(E::invalid_value(Unexpected::Float(v), &self))
            }
        }
    }

    struct OptionalInteger;

    impl<'de> Visitor<'de> for OptionalInteger {
        type Value = Option<i64>;

        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("an integer or null")
        }
        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            d.deserialize_any(Integer).map(Some)
        }
    }

    /// For `Option<i64>` fields: `#[serde(default, deserialize_with = "integer::optional")]`.
    pub fn optional<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
        d.deserialize_option(OptionalInteger)
    }

    /// For `Vec<i64>` fields.
    pub fn list<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<i64>, D::Error> {
        struct List;
        impl<'de> Visitor<'de> for List {
            type Value = Vec<i64>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a list of integers")
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<i64>, A::Error> {
                let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0));
                while let Some(v) = seq.next_element::<Whole>()? {
                    out.push(v.0);
                }
                Ok(out)
            }
        }
        d.deserialize_seq(List)
    }

    /// For `Vec<Vec<i64>>` fields (lists of token-id lists).
    pub fn lists<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Vec<i64>>, D::Error> {
        struct Lists;
        impl<'de> Visitor<'de> for Lists {
            type Value = Vec<Vec<i64>>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a list of lists of integers")
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0));
                while let Some(list) = seq.next_element::<WholeList>()? {
                    out.push(list.0);
                }
                Ok(out)
            }
        }
        d.deserialize_seq(Lists)
    }

    struct WholeList(Vec<i64>);

    impl<'de> serde::Deserialize<'de> for WholeList {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            list(d).map(WholeList)
        }
    }

    struct Whole(i64);

    impl<'de> serde::Deserialize<'de> for Whole {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            d.deserialize_any(Integer).map(Whole)
        }
    }

    #[cfg(test)]
    mod tests {
        #[derive(serde::Deserialize)]
        struct Body {
            #[serde(default, deserialize_with = "super::optional")]
            n: Option<i64>,
            #[serde(default, deserialize_with = "super::list")]
            ids: Vec<i64>,
        }

        fn parse(json: &str) -> Result<Body, String> {
            let de = &mut serde_json::Deserializer::from_str(json);
            serde_path_to_error::deserialize(de).map_err(|e| format!("{}: {}", e.path(), e.inner()))
        }

        #[test]
        fn integral_floats_count_as_integers_and_fractions_are_refused_by_name() {
            assert_eq!(parse(r#"{"n": 5.0, "ids": [1, 2.0]}"#).unwrap().n, Some(5));
            assert_eq!(parse(r#"{"n": null}"#).unwrap().n, None);
            assert_eq!(parse(r#"{}"#).unwrap().n, None);
            assert_eq!(parse(r#"{"ids": [1, 2.0]}"#).unwrap().ids, vec![1, 2]);
            let error = parse(r#"{"n": 5.5}"#).err().unwrap();
            assert!(
                error.starts_with("n: invalid value: floating point `5.5`"),
                "{error}"
            );
            let error = parse(r#"{"ids": [1, "x"]}"#).err().unwrap();
            assert!(error.starts_with("ids[1]: invalid type: string"), "{error}");
            assert!(parse(r#"{"n": 1e300}"#).is_err());
        }
    }
}
