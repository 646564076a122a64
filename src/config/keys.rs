//! API keys and roles as the models file states them (`[[keys]]`, `[roles]`, `[limits]`), checked into a
//! [`KeysSpec`]: each key's id, the SHA-256 of its secret (a plaintext `key` or `key_env` is hashed here and
//! never kept), its role's actions, the models it may use, its limits and expiry.
//!
//! ```toml
//! [[keys]]
//! id = "team-a"
//! sha256 = "<64 hex digits>"     # or key = "sk-…", or key_env = "TEAM_A_KEY" (hashed at load)
//! role = "user"                  # admin, user, metrics, or a name from [roles]
//! models = ["smollm2"]           # models or aliases; omitted = all
//! rpm = 60                       # requests per minute
//! tpm = 20000                    # prompt + completion tokens per minute
//! max_concurrent = 4
//! max_request_bytes = 2000000    # one request body, at most (under --max-request-body-bytes)
//! expires = "2027-01-01T00:00:00Z"
//!
//! [roles]
//! batch = ["completions", "models.read"]
//!
//! [limits]                       # every key's default limits
//! rpm = 600
//! ```

use std::collections::BTreeMap;

use serde::Deserialize;
use sha2::{Digest, Sha256};

/// What a role may do (Meilisearch-style actions). `*` is every action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Action {
    /// `POST /v1/chat/completions` (and gRPC `Chat`).
    ChatCompletions,
    /// `POST /v1/completions` (and gRPC `Generate`, `GenerateOnce`).
    Completions,
    /// `/v1/responses` (create, retrieve and delete the caller's own responses).
    Responses,
    /// `POST /v1/embeddings`.
    Embeddings,
    /// `POST /tokenize`, `/detokenize` (and gRPC `Tokenize`).
    Tokenize,
    /// `GET /v1/models`, `/v1/models/{model}` (and gRPC `ListModels`).
    ModelsRead,
    /// `GET /metrics`.
    MetricsRead,
    /// `/admin/...`.
    Admin,
    /// `/openapi.json`, `/docs`.
    DocsRead,
}

impl Action {
    pub const ALL: [Action; 9] = [
        Action::ChatCompletions,
        Action::Completions,
        Action::Responses,
        Action::Embeddings,
        Action::Tokenize,
        Action::ModelsRead,
        Action::MetricsRead,
        Action::Admin,
        Action::DocsRead,
    ];

    /// Actions only a key can have: a server without keys does not offer them at all.
    pub fn needs_a_key(self) -> bool {
        matches!(self, Action::Admin)
    }

    pub fn name(self) -> &'static str {
        match self {
            Action::ChatCompletions => "chat.completions",
            Action::Completions => "completions",
            Action::Responses => "responses",
            Action::Embeddings => "embeddings",
            Action::Tokenize => "tokenize",
            Action::ModelsRead => "models.read",
            Action::MetricsRead => "metrics.read",
            Action::Admin => "admin",
            Action::DocsRead => "docs.read",
        }
    }

    fn parse(name: &str) -> Option<Vec<Action>> {
        if name == "*" {
            return Some(Action::ALL.to_vec());
        }
        Action::ALL
            .iter()
            .find(|a| a.name() == name)
            .map(|a| vec![*a])
    }
}

/// The built-in roles.
fn builtin_role(name: &str) -> Option<Vec<Action>> {
    use Action::*;
    match name {
        "admin" => Some(Action::ALL.to_vec()),
        "user" => Some(vec![
            ChatCompletions,
            Completions,
            Responses,
            Embeddings,
            Tokenize,
            ModelsRead,
            DocsRead,
        ]),
        "metrics" => Some(vec![MetricsRead]),
        _ => None,
    }
}

/// Requests per minute, tokens per minute, concurrent requests, bytes of one request body; `None`: no
/// limit (the body still has the server's `--max-request-body-bytes`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    #[serde(default)]
    pub rpm: Option<u32>,
    #[serde(default)]
    pub tpm: Option<u64>,
    #[serde(default)]
    pub max_concurrent: Option<u32>,
    #[serde(default)]
    pub max_request_bytes: Option<usize>,
}

impl Limits {
    /// This key's limits over the defaults: each one it sets wins.
    fn over(self, defaults: Limits) -> Limits {
        Limits {
            rpm: self.rpm.or(defaults.rpm),
            tpm: self.tpm.or(defaults.tpm),
            max_concurrent: self.max_concurrent.or(defaults.max_concurrent),
            max_request_bytes: self.max_request_bytes.or(defaults.max_request_bytes),
        }
    }

    /// Whether any budget is kept for the key (requests, tokens or concurrency): a key with none is
    /// admitted without a window, and with Redis without a round trip. The byte cap needs no window.
    pub fn counts_requests(&self) -> bool {
        self.rpm.is_some() || self.tpm.is_some() || self.max_concurrent.is_some()
    }
}

/// One `[[keys]]` table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyFields {
    pub id: String,
    #[serde(default)]
    pub sha256: Option<String>,
    /// The key itself (hashed at load; prefer `sha256` or `key_env`).
    #[serde(default)]
    pub key: Option<String>,
    /// An environment variable holding the key (hashed at load).
    #[serde(default)]
    pub key_env: Option<String>,
    pub role: String,
    #[serde(default)]
    pub models: Option<Vec<String>>,
    #[serde(flatten)]
    pub limits: Limits,
    /// RFC 3339 in UTC (`2027-01-01T00:00:00Z`) or Unix seconds.
    #[serde(default)]
    pub expires: Option<toml::Value>,
}

/// A checked key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeySpec {
    pub id: String,
    pub sha256: [u8; 32],
    pub role: String,
    pub actions: Vec<Action>,
    /// Model names or aliases it may use; `None`: all.
    pub models: Option<Vec<String>>,
    pub limits: Limits,
    /// Unix seconds after which it is refused.
    pub expires: Option<u64>,
}

/// Every key; empty: the server is open (and says so at start-up).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeysSpec {
    pub keys: Vec<KeySpec>,
}

/// A fresh key: `sk-` and 32 random bytes (256 bits, from the thread's ChaCha generator seeded by the
/// operating system) in URL-safe base64.
pub fn new_key() -> String {
    use base64::Engine;
    let bytes: [u8; 32] = rand::random();
    format!(
        "sk-{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    )
}

/// `llmserve keys new [ID]`: a fresh key, printed once, with the `[[keys]]` table that admits it.
pub fn new_key_text(id: &str) -> String {
    let key = new_key();
    format!(
        "# The key (shown once; give it to the client, keep it nowhere else):\n{key}\n\n\
         # For the models file (only the hash is stored):\n[[keys]]\nid = \"{id}\"\nsha256 = \"{}\"\nrole = \"user\"\n",
        hex(&hash_key(&key))
    )
}

/// The SHA-256 of a key, as the file stores it.
pub fn hash_key(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn parse_hex(text: &str) -> Option<[u8; 32]> {
    if text.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

/// `2027-01-01T00:00:00Z` → Unix seconds (UTC only: an expiry should not depend on a zone).
fn parse_utc(text: &str) -> Option<u64> {
    let b = text.as_bytes();
    if b.len() != 20
        || b[4] != b'-'
        || b[7] != b'-'
        || b[10] != b'T'
        || b[13] != b':'
        || b[16] != b':'
        || b[19] != b'Z'
    {
        return None;
    }
    let num = |range: std::ops::Range<usize>| text.get(range)?.parse::<i64>().ok();
    let (y, m, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hh, mm, ss) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) || hh > 23 || mm > 59 || ss > 60 {
        return None;
    }
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    u64::try_from(days * 86_400 + hh * 3600 + mm * 60 + ss).ok()
}

/// Checks the keys, roles and default limits of a models file. `env` reads `key_env` variables.
pub fn keys_spec(
    keys: &[KeyFields],
    roles: &BTreeMap<String, Vec<String>>,
    defaults: Limits,
    env: impl Fn(&str) -> Option<String>,
) -> Result<KeysSpec, String> {
    let mut role_actions: BTreeMap<String, Vec<Action>> = BTreeMap::new();
    for (name, actions) in roles {
        if builtin_role(name).is_some() {
            return Err(format!("role `{name}` is built in and cannot be redefined"));
        }
        let mut parsed = Vec::new();
        for action in actions {
            let known: Vec<&str> = Action::ALL.iter().map(|a| a.name()).collect();
            parsed.extend(Action::parse(action).ok_or_else(|| {
                format!(
                    "role `{name}`: unknown action `{action}` (known: *, {})",
                    known.join(", ")
                )
            })?);
        }
        parsed.sort();
        parsed.dedup();
        role_actions.insert(name.clone(), parsed);
    }
    let mut specs: Vec<KeySpec> = Vec::new();
    for fields in keys {
        let id = &fields.id;
        super::names::check_name("key id", id)?;
        if specs.iter().any(|k| &k.id == id) {
            return Err(format!("key `{id}` is listed twice"));
        }
        let sha256 =
            match (&fields.sha256, &fields.key, &fields.key_env) {
                (Some(hash), None, None) => parse_hex(&hash.to_ascii_lowercase())
                    .ok_or_else(|| format!("key `{id}`: `sha256` must be 64 hex digits"))?,
                (None, Some(key), None) => hash_key(key),
                (None, None, Some(var)) => hash_key(&env(var).ok_or_else(|| {
                    format!("key `{id}`: environment variable `{var}` is not set")
                })?),
                _ => {
                    return Err(format!(
                        "key `{id}`: give exactly one of `sha256`, `key` and `key_env`"
                    ))
                }
            };
        if let Some(other) = specs.iter().find(|k| k.sha256 == sha256) {
            return Err(format!("keys `{}` and `{id}` are the same key", other.id));
        }
        let actions = builtin_role(&fields.role)
            .or_else(|| role_actions.get(&fields.role).cloned())
            .ok_or_else(|| {
                format!(
                    "key `{id}`: unknown role `{}` (admin, user, metrics, or one under [roles])",
                    fields.role
                )
            })?;
        let expires = match &fields.expires {
            None => None,
            Some(toml::Value::Integer(secs)) if *secs >= 0 => Some(*secs as u64),
            Some(toml::Value::String(text)) => Some(parse_utc(text).ok_or_else(|| {
                format!("key `{id}`: `expires` must be RFC 3339 in UTC like 2027-01-01T00:00:00Z, got `{text}`")
            })?),
            Some(other) => {
                return Err(format!(
                    "key `{id}`: `expires` must be a UTC timestamp or Unix seconds, got {other}"
                ))
            }
        };
        let limits = fields.limits.over(defaults);
        if limits.rpm == Some(0)
            || limits.tpm == Some(0)
            || limits.max_concurrent == Some(0)
            || limits.max_request_bytes == Some(0)
        {
            return Err(format!(
                "key `{id}`: a limit of 0 refuses everything; remove the key instead"
            ));
        }
        specs.push(KeySpec {
            id: id.clone(),
            sha256,
            role: fields.role.clone(),
            actions,
            models: fields.models.clone(),
            limits,
            expires,
        });
    }
    Ok(KeysSpec { keys: specs })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(toml_text: &str) -> Vec<KeyFields> {
        #[derive(Deserialize)]
        struct Root {
            keys: Vec<KeyFields>,
        }
        toml::from_str::<Root>(toml_text).unwrap().keys
    }

    #[test]
    fn keys_are_hashed_roles_resolved_and_limits_defaulted() {
        let keys = fields(
            r#"
            [[keys]]
            id = "a"
            key = "sk-one"
            role = "user"
            models = ["smollm2"]
            rpm = 60
            [[keys]]
            id = "b"
            key_env = "B_KEY"
            role = "batch"
            expires = "2027-01-01T00:00:00Z"
            "#,
        );
        let roles = BTreeMap::from([("batch".to_string(), vec!["completions".to_string()])]);
        let defaults = Limits {
            rpm: Some(600),
            tpm: Some(1000),
            max_concurrent: None,
            max_request_bytes: None,
        };
        let spec = keys_spec(&keys, &roles, defaults, |v| {
            (v == "B_KEY").then(|| "sk-two".into())
        })
        .unwrap();
        assert_eq!(spec.keys[0].sha256, hash_key("sk-one"));
        assert_eq!(spec.keys[0].limits.rpm, Some(60));
        assert_eq!(spec.keys[0].limits.tpm, Some(1000));
        assert_eq!(spec.keys[1].sha256, hash_key("sk-two"));
        assert_eq!(spec.keys[1].actions, vec![Action::Completions]);
        assert_eq!(spec.keys[1].expires, Some(1_798_761_600));
        assert_eq!(
            hex(&hash_key("abc")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn new_keys_are_long_random_and_their_table_admits_them() {
        let (a, b) = (new_key(), new_key());
        assert!(a.starts_with("sk-") && a.len() == 46 && a != b);
        let text = new_key_text("team-a");
        let key = text.lines().nth(1).unwrap();
        assert!(text.contains(&hex(&hash_key(key))) && text.contains("id = \"team-a\""));
    }

    #[test]
    fn bad_keys_are_refused_with_the_reason() {
        let cases = [
            ("[[keys]]\nid = \"a\"\nrole = \"user\"\n", "exactly one of"),
            ("[[keys]]\nid = \"a\"\nsha256 = \"zz\"\nrole = \"user\"\n", "64 hex digits"),
            ("[[keys]]\nid = \"a\"\nkey = \"x\"\nrole = \"boss\"\n", "unknown role"),
            ("[[keys]]\nid = \"a\"\nkey = \"x\"\nrole = \"user\"\n[[keys]]\nid = \"b\"\nkey = \"x\"\nrole = \"user\"\n", "same key"),
            ("[[keys]]\nid = \"a\"\nkey = \"x\"\nrole = \"user\"\nexpires = \"tomorrow\"\n", "RFC 3339"),
            ("[[keys]]\nid = \"a\"\nkey_env = \"NOPE\"\nrole = \"user\"\n", "is not set"),
            ("[[keys]]\nid = \"a\"\nkey = \"x\"\nrole = \"user\"\nrpm = 0\n", "refuses everything"),
        ];
        for (text, reason) in cases {
            let error = keys_spec(&fields(text), &BTreeMap::new(), Limits::default(), |_| None)
                .unwrap_err();
            assert!(error.contains(reason), "{text}: {error}");
        }
        let roles = BTreeMap::from([("x".to_string(), vec!["fly".to_string()])]);
        assert!(keys_spec(&[], &roles, Limits::default(), |_| None)
            .unwrap_err()
            .contains("unknown action"));
    }
}
