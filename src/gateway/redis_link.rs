//! One link to the Redis behind `--limits-redis`: its URLs checked, a client for one server or a Redis
//! Cluster (TLS with a private CA when asked), a multiplexed connection made on first use and kept, and
//! scripts run within a deadline. The per-key limits ([`super::redis_quota`]) and the shared Responses
//! store (`crate::responses::redis_store`) each hold one.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The longest one Redis round trip may take before the caller decides without it.
pub const ROUND_TRIP_TIMEOUT: Duration = Duration::from_millis(250);

/// Why the Redis settings cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SharedLimitsError {
    #[error("--limits-redis `{url}`: {reason}")]
    BadUrl { url: String, reason: String },
    #[error("--limits-redis-ca-file {path}: {reason}")]
    BadCa { path: String, reason: String },
}

/// Where Redis is and how to reach it.
#[derive(Debug, Clone)]
pub struct RedisSettings {
    /// One URL (`redis://`, `rediss://`), or several: the nodes of a Redis Cluster.
    pub urls: Vec<String>,
    /// PEM roots to trust for `rediss://` (a private CA); `None`: the system's.
    pub ca_pem: Option<Vec<u8>>,
}

impl RedisSettings {
    /// `--limits-redis` (comma-separated for a cluster) and `--limits-redis-ca-file`, checked.
    pub fn from_flags(
        urls: &str,
        ca_file: Option<&std::path::Path>,
    ) -> Result<Self, SharedLimitsError> {
        let urls: Vec<String> = urls
            .split(',')
            .map(|u| u.trim().to_string())
            .filter(|u| !u.is_empty())
            .collect();
        let ca_pem = ca_file
            .map(|path| {
                std::fs::read(path).map_err(|e| SharedLimitsError::BadCa {
                    path: path.display().to_string(),
                    reason: e.to_string(),
                })
            })
            .transpose()?;
        let settings = RedisSettings { urls, ca_pem };
        settings.client()?;
        Ok(settings)
    }

    fn certificates(&self) -> redis::TlsCertificates {
        redis::TlsCertificates {
            client_tls: None,
            root_cert: self.ca_pem.clone(),
        }
    }

    pub(crate) fn client(&self) -> Result<RedisClient, SharedLimitsError> {
        let bad = |url: &str, reason: String| SharedLimitsError::BadUrl {
            url: redacted(url),
            reason,
        };
        match self.urls.as_slice() {
            [] => Err(bad("", "no URL".into())),
            [url] => {
                check_scheme(url).map_err(|r| bad(url, r))?;
                let client = if self.ca_pem.is_some() {
                    redis::Client::build_with_tls(url.as_str(), self.certificates())
                } else {
                    redis::Client::open(url.as_str())
                };
                client
                    .map(RedisClient::Single)
                    .map_err(|e| bad(url, e.to_string()))
            }
            urls => {
                for url in urls {
                    check_scheme(url).map_err(|r| bad(url, r))?;
                }
                let mut builder = redis::cluster::ClusterClientBuilder::new(urls.to_vec())
                    .connection_timeout(ROUND_TRIP_TIMEOUT)
                    .response_timeout(ROUND_TRIP_TIMEOUT);
                if self.ca_pem.is_some() {
                    builder = builder.certs(self.certificates());
                }
                builder
                    .build()
                    .map(RedisClient::Cluster)
                    .map_err(|e| bad(&urls.join(","), e.to_string()))
            }
        }
    }
}

fn check_scheme(url: &str) -> Result<(), String> {
    if url.starts_with("redis://") || url.starts_with("rediss://") {
        Ok(())
    } else {
        Err("expected redis://[user:password@]host[:port] or rediss://…".into())
    }
}

/// A URL without its password, for logs and errors.
pub use crate::config::from_flags::redact_url as redacted;

// One per process, made at start: the variants' sizes do not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Clone)]
pub(crate) enum RedisClient {
    Single(redis::Client),
    Cluster(redis::cluster::ClusterClient),
}

/// An open connection: multiplexed, so that a call that timed out does not block the next one.
#[derive(Clone)]
pub(crate) enum Connection {
    Single(redis::aio::ConnectionManager),
    Cluster(redis::cluster_async::ClusterConnection),
}

#[derive(Debug, thiserror::Error)]
pub enum RedisError {
    /// No connection: nothing was sent.
    #[error("redis: not connected: {0}")]
    NotConnected(String),
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    /// Sent, and no answer in time: Redis may still run it.
    #[error("redis: no answer within {0:?}")]
    Timeout(Duration),
}

impl RedisError {
    /// Whether Redis may have run the call (or may still run it) although no answer came: a timeout, or
    /// a connection lost after sending. An error reply, or no connection at all, ran nothing.
    pub fn may_have_run(&self) -> bool {
        match self {
            RedisError::NotConnected(_) => false,
            RedisError::Timeout(_) => true,
            RedisError::Redis(error) => {
                error.is_timeout() || error.is_io_error() || error.is_connection_dropped()
            }
        }
    }
}

/// A script call: keys and arguments, sent as EVALSHA (EVAL the first time).
pub struct Call<'a> {
    pub script: &'a redis::Script,
    pub keys: Vec<String>,
    pub args: Vec<String>,
}

/// A client and its connection, made on first use.
pub struct RedisLink {
    client: RedisClient,
    connection: Mutex<Option<Connection>>,
}

impl RedisLink {
    pub fn new(settings: &RedisSettings) -> Result<Self, SharedLimitsError> {
        // rustls cannot pick a provider when the tree enables two; this process uses aws-lc-rs (an
        // error only says one is installed already).
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        Ok(RedisLink {
            client: settings.client()?,
            connection: Mutex::new(None),
        })
    }

    async fn connection(&self) -> Result<Connection, RedisError> {
        if let Some(connection) = self.connection.lock().expect("connection lock").clone() {
            return Ok(connection);
        }
        let connecting = async {
            Ok::<_, redis::RedisError>(match &self.client {
                RedisClient::Single(client) => {
                    let config = redis::aio::ConnectionManagerConfig::new()
                        .set_connection_timeout(Some(ROUND_TRIP_TIMEOUT))
                        .set_response_timeout(Some(ROUND_TRIP_TIMEOUT))
                        .set_number_of_retries(1);
                    Connection::Single(
                        redis::aio::ConnectionManager::new_with_config(client.clone(), config)
                            .await?,
                    )
                }
                RedisClient::Cluster(client) => {
                    Connection::Cluster(client.get_async_connection().await?)
                }
            })
        };
        let connection = tokio::time::timeout(ROUND_TRIP_TIMEOUT, connecting)
            .await
            .map_err(|_| RedisError::NotConnected("connecting timed out".into()))?
            .map_err(|e| RedisError::NotConnected(e.to_string()))?;
        *self.connection.lock().expect("connection lock") = Some(connection.clone());
        Ok(connection)
    }

    /// Runs a script within the round-trip timeout; its integer array reply.
    pub async fn run(&self, call: Call<'_>) -> Result<Vec<i64>, RedisError> {
        Ok(integers(&self.run_value(call, ROUND_TRIP_TIMEOUT).await?))
    }

    /// Runs a script within `deadline` (connecting included); its reply as Redis gave it.
    pub async fn run_value(
        &self,
        call: Call<'_>,
        deadline: Duration,
    ) -> Result<redis::Value, RedisError> {
        let mut invocation = call.script.prepare_invoke();
        for key in &call.keys {
            invocation.key(key);
        }
        for arg in &call.args {
            invocation.arg(arg);
        }
        let started = Instant::now();
        let connection = self.connection().await?;
        let left = deadline.saturating_sub(started.elapsed());
        let attempt = async {
            let reply: redis::RedisResult<redis::Value> = match connection {
                Connection::Single(mut c) => invocation.invoke_async(&mut c).await,
                Connection::Cluster(mut c) => invocation.invoke_async(&mut c).await,
            };
            Ok::<_, RedisError>(reply?)
        };
        tokio::time::timeout(left, attempt)
            .await
            .map_err(|_| RedisError::Timeout(deadline))?
    }
}

pub fn integers(value: &redis::Value) -> Vec<i64> {
    match value {
        redis::Value::Array(items) => items
            .iter()
            .map(|item| match item {
                redis::Value::Int(n) => *n,
                _ => i64::MIN,
            })
            .collect(),
        redis::Value::Int(n) => vec![*n],
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_checked_and_passwords_never_shown() {
        assert!(RedisSettings::from_flags("redis://127.0.0.1:6380", None).is_ok());
        assert!(RedisSettings::from_flags("rediss://user:pw@cache:7000/0", None).is_ok());
        assert!(RedisSettings::from_flags("redis://a:1,redis://b:2", None).is_ok());
        let error = RedisSettings::from_flags("http://user:secret@cache", None)
            .unwrap_err()
            .to_string();
        assert!(!error.contains("secret"), "{error}");
        assert_eq!(
            redacted("rediss://alice:secret@cache:6380/0"),
            "rediss://alice:***@cache:6380/0"
        );
        assert_eq!(redacted("redis://cache"), "redis://cache");
    }
}
