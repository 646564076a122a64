//! The gateway, between the model lookup and generation: who is calling. A presented API key is hashed
//! and compared, in constant time, with every configured key's SHA-256; the matching key becomes a
//! [`Principal`] (its id, its role's actions, the models it may use, its limits). No key configured: the
//! server is open and every caller is [`Principal::open`]. The key's limits: [`limiter`] (a request's hold
//! on them), kept in this process ([`quota`]) or in Redis for every replica ([`shared`]).

pub mod access;
pub mod limiter;
pub mod quota;
pub mod redis_link;
pub mod redis_quota;

use std::sync::{Arc, RwLock};

use crate::config::keys::{hash_key, Action, KeysSpec, Limits};
use crate::config::VERSION_SEPARATOR;

/// Why a caller is refused.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum GatewayError {
    #[error("Missing API key: send `Authorization: Bearer <key>` (or `x-api-key: <key>`)")]
    MissingKey,
    #[error("Incorrect API key provided")]
    InvalidKey,
    #[error("The API key `{0}` has expired")]
    ExpiredKey(String),
    #[error("The API key `{key}` may not use {action}")]
    PermissionDenied { key: String, action: &'static str },
    #[error("The API key `{key}` may not use the model `{model}`")]
    ModelNotAllowed { key: String, model: String },
    /// An action that only a key can have (the admin API), on a server without keys.
    #[error("{action} needs an API key whose role has it, and this server has no keys: add [[keys]] to the models file")]
    KeysNotConfigured { action: &'static str },
}

/// The key a request presents: `Authorization: Bearer <key>` (scheme in any case), else `x-api-key`;
/// the same for HTTP headers and gRPC metadata.
pub fn presented_key<'a>(
    authorization: Option<&'a str>,
    api_key: Option<&'a str>,
) -> Option<&'a str> {
    authorization
        .and_then(|v| {
            let (scheme, token) = v.split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
        })
        .or(api_key)
        .filter(|k| !k.is_empty())
}

/// Who is calling: a key's id, what its role may do, the models it may use and its limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// `None` on an open server (no keys configured).
    pub key_id: Option<String>,
    actions: Vec<Action>,
    models: Option<Vec<String>>,
    pub limits: Limits,
}

impl Principal {
    /// Everyone, on a server without keys: every action but those only a key can have (the admin API).
    pub fn open() -> Self {
        Principal {
            key_id: None,
            actions: Action::ALL
                .into_iter()
                .filter(|a| !a.needs_a_key())
                .collect(),
            models: None,
            limits: Limits::default(),
        }
    }

    /// A caller without a valid key where keys are configured, on the routes anyone may call (the
    /// probes, the chat page): no action, no model.
    pub fn anonymous() -> Self {
        Principal {
            key_id: None,
            actions: Vec::new(),
            models: Some(Vec::new()),
            limits: Limits::default(),
        }
    }

    /// Whoever reaches `--metrics-port`, a port of its own for scrapers: `metrics.read` only.
    pub fn scraper() -> Self {
        Principal {
            key_id: None,
            actions: vec![Action::MetricsRead],
            models: Some(Vec::new()),
            limits: Limits::default(),
        }
    }

    pub fn may(&self, action: Action) -> bool {
        self.actions.contains(&action)
    }

    /// Refuses an action the key's role does not have.
    pub fn require(&self, action: Action) -> Result<(), GatewayError> {
        if self.may(action) {
            Ok(())
        } else if self.key_id.is_none() && action.needs_a_key() {
            Err(GatewayError::KeysNotConfigured {
                action: action.name(),
            })
        } else {
            Err(GatewayError::PermissionDenied {
                key: self.key_id.clone().unwrap_or_default(),
                action: action.name(),
            })
        }
    }

    /// Whether the key may use `id`: an alias it names, or a model it names (then also its versions,
    /// `model@version`).
    pub fn may_use(&self, id: &str) -> bool {
        let Some(allowed) = &self.models else {
            return true;
        };
        let model = id
            .split_once(VERSION_SEPARATOR)
            .map_or(id, |(model, _)| model);
        allowed.iter().any(|a| a == id || a == model)
    }

    /// Refuses a model id outside the key's list (403 `model_not_allowed`).
    pub fn check_model(&self, id: &str) -> Result<(), GatewayError> {
        if self.may_use(id) {
            Ok(())
        } else {
            Err(GatewayError::ModelNotAllowed {
                key: self.key_id.clone().unwrap_or_default(),
                model: id.to_string(),
            })
        }
    }

    /// The caller's stable identity for sticky routing: the key id, when there is one.
    pub fn identity(&self) -> Option<&str> {
        self.key_id.as_deref()
    }
}

/// Compares two digests without an early exit: the words' differences are OR-ed together and looked at
/// once, so the time taken does not depend on where they differ (`black_box` keeps the compiler from
/// turning the fold back into a comparison that stops at the first difference).
fn digests_equal(a: &[u8; 32], b: &[u8; 32]) -> bool {
    let mut difference = 0u64;
    for (x, y) in a.chunks_exact(8).zip(b.chunks_exact(8)) {
        let x = u64::from_ne_bytes(x.try_into().expect("8 bytes"));
        let y = u64::from_ne_bytes(y.try_into().expect("8 bytes"));
        difference |= std::hint::black_box(x ^ y);
    }
    std::hint::black_box(difference) == 0
}

/// The configured keys; replaced whole on reload.
pub struct Gateway {
    keys: RwLock<Arc<KeysSpec>>,
}

impl Gateway {
    pub fn new(keys: KeysSpec) -> Self {
        if keys.keys.is_empty() {
            tracing::warn!(
                "no API keys configured: every client that reaches the port may use every route"
            );
        } else {
            tracing::info!(
                keys = keys.keys.len(),
                "API keys configured: every route but the probes needs one"
            );
        }
        Gateway {
            keys: RwLock::new(Arc::new(keys)),
        }
    }

    /// New keys (reload): the next request is checked against them; running ones finish.
    pub fn replace(&self, keys: KeysSpec) -> bool {
        let mut current = self.keys.write().expect("keys lock");
        let changed = **current != keys;
        *current = Arc::new(keys);
        changed
    }

    /// Whether no key is configured (the server is open).
    pub fn is_open(&self) -> bool {
        self.keys.read().expect("keys lock").keys.is_empty()
    }

    /// The principal behind a presented key (`None`: none presented), at Unix time `now`.
    pub fn authenticate(
        &self,
        presented: Option<&str>,
        now: u64,
    ) -> Result<Principal, GatewayError> {
        let keys = self.keys.read().expect("keys lock").clone();
        if keys.keys.is_empty() {
            return Ok(Principal::open());
        }
        let presented = presented.ok_or(GatewayError::MissingKey)?;
        let digest = hash_key(presented);
        // Every key is compared, each in constant time: neither which key matched nor how many leading
        // bytes did shows in the time taken.
        let mut matched = None;
        for key in &keys.keys {
            if digests_equal(&key.sha256, &digest) {
                matched = Some(key);
            }
        }
        let key = matched.ok_or(GatewayError::InvalidKey)?;
        if key.expires.is_some_and(|at| now >= at) {
            return Err(GatewayError::ExpiredKey(key.id.clone()));
        }
        Ok(Principal {
            key_id: Some(key.id.clone()),
            actions: key.actions.clone(),
            models: key.models.clone(),
            limits: key.limits,
        })
    }

    /// Every key id (metrics declare their series).
    pub fn key_ids(&self) -> Vec<String> {
        let keys = self.keys.read().expect("keys lock").clone();
        keys.keys.iter().map(|k| k.id.clone()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::keys::KeySpec;

    fn key(id: &str, secret: &str, actions: Vec<Action>, models: Option<Vec<&str>>) -> KeySpec {
        KeySpec {
            id: id.into(),
            sha256: hash_key(secret),
            role: "user".into(),
            actions,
            models: models.map(|m| m.into_iter().map(String::from).collect()),
            limits: Limits::default(),
            expires: None,
        }
    }

    #[test]
    fn keys_become_principals_with_their_actions_and_models() {
        let mut expired = key("old", "sk-old", vec![Action::Completions], None);
        expired.expires = Some(100);
        let gateway = Gateway::new(KeysSpec {
            keys: vec![
                key(
                    "a",
                    "sk-a",
                    vec![Action::ChatCompletions],
                    Some(vec!["smollm2", "chat"]),
                ),
                key("m", "sk-m", vec![Action::MetricsRead], None),
                expired,
            ],
        });
        assert_eq!(gateway.authenticate(None, 0), Err(GatewayError::MissingKey));
        assert_eq!(
            gateway.authenticate(Some("sk-b"), 0),
            Err(GatewayError::InvalidKey)
        );
        assert_eq!(
            gateway.authenticate(Some("sk-old"), 100),
            Err(GatewayError::ExpiredKey("old".into()))
        );
        assert!(gateway.authenticate(Some("sk-old"), 99).is_ok());
        let a = gateway.authenticate(Some("sk-a"), 0).unwrap();
        assert_eq!(a.key_id.as_deref(), Some("a"));
        assert!(a.may(Action::ChatCompletions) && !a.may(Action::Admin));
        assert!(a.may_use("chat") && a.may_use("smollm2") && a.may_use("smollm2@v2"));
        assert!(!a.may_use("other") && !a.may_use("other@v1"));
        let m = gateway.authenticate(Some("sk-m"), 0).unwrap();
        assert!(matches!(
            m.require(Action::ChatCompletions),
            Err(GatewayError::PermissionDenied { .. })
        ));
        // Reload: the revoked key is refused from the next request on.
        assert!(gateway.replace(KeysSpec {
            keys: vec![key("m", "sk-m", vec![Action::MetricsRead], None)]
        }));
        assert_eq!(
            gateway.authenticate(Some("sk-a"), 0),
            Err(GatewayError::InvalidKey)
        );
    }

    #[test]
    fn digests_are_equal_only_when_every_byte_is() {
        let a = hash_key("sk-a");
        assert!(digests_equal(&a, &a));
        for byte in [0, 7, 8, 31] {
            let mut b = a;
            b[byte] ^= 1;
            assert!(!digests_equal(&a, &b), "byte {byte}");
        }
    }

    #[test]
    fn without_keys_everyone_may_do_everything_but_administer() {
        let gateway = Gateway::new(KeysSpec::default());
        let open = gateway.authenticate(None, 0).unwrap();
        assert_eq!(open, Principal::open());
        assert!(Action::ALL
            .iter()
            .filter(|a| **a != Action::Admin)
            .all(|a| open.may(*a)));
        assert!(open.may_use("anything"));
        assert_eq!(
            open.require(Action::Admin),
            Err(GatewayError::KeysNotConfigured { action: "admin" })
        );
    }

    #[test]
    fn anonymous_and_scraper_callers_may_do_almost_nothing() {
        let anonymous = Principal::anonymous();
        assert!(Action::ALL.iter().all(|a| !anonymous.may(*a)));
        assert!(!anonymous.may_use("smollm2"));
        let scraper = Principal::scraper();
        assert!(Action::ALL
            .iter()
            .all(|a| scraper.may(*a) == (*a == Action::MetricsRead)));
    }
}
