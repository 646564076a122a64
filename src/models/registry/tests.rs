//! The registry with a scripted loader: what routes where, when weights switch, what reload changes, and
//! that a version taken out of service lives exactly as long as its last request.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use futures::future::BoxFuture;
use tokio::sync::Notify;

use super::lifecycle::DRAIN_POLL;
use super::*;
use crate::config::file::parse;
use crate::config::models::{ModelsSpec, VersionSpec};
use crate::config::VersionDefaults;
use crate::engine::scripted::{engine, text};
use crate::engine::{Engine, EngineError};
use crate::metrics::Metrics;
use crate::models::error::RegistryError;

/// Loads a scripted engine per version; a version with a gate loads only once its gate is opened, one
/// whose source contains `broken` fails.
#[derive(Default)]
struct ScriptedLoader {
    gates: Mutex<HashMap<String, Arc<Notify>>>,
}

impl ScriptedLoader {
    fn gate(&self, id: &str) -> Arc<Notify> {
        self.gates
            .lock()
            .unwrap()
            .entry(id.to_string())
            .or_default()
            .clone()
    }
}

impl Loader for ScriptedLoader {
    fn load(&self, spec: &VersionSpec) -> BoxFuture<'static, Result<Arc<dyn Engine>, EngineError>> {
        let gate = self.gates.lock().unwrap().get(&spec.id()).cloned();
        let broken = format!("{:?}", spec.source).contains("broken");
        Box::pin(async move {
            if let Some(gate) = gate {
                gate.notified().await;
            }
            if broken {
                return Err(EngineError::Load("broken on purpose".into()));
            }
            Ok(engine(3, vec![text("hi")], Duration::ZERO) as Arc<dyn Engine>)
        })
    }
}

/// Small queues: 4 slots, 4 waiting.
fn defaults() -> VersionDefaults {
    let mut defaults = VersionDefaults::for_tests();
    defaults.engine.max_num_seqs = 4;
    defaults.queue.max_waiting = 4;
    defaults
}

/// A models file whose sources are hub-style ids (the scripted loader never reads them).
fn spec(text: &str) -> ModelsSpec {
    parse(text, Path::new("/"), &defaults()).expect("a valid test spec")
}

const TWO: &str = r#"
    [[models]]
    name = "m"
    [[models.versions]]
    version = "v1"
    source = "org/one"
    [[models.versions]]
    version = "v2"
    source = "org/two"
    [aliases]
    chat = { "m@v1" = 100, "m@v2" = 0 }
"#;

fn registry(loader: Arc<ScriptedLoader>, drain_timeout: Duration) -> ModelRegistry {
    ModelRegistry::new(Arc::new(Metrics::new()), loader, drain_timeout, true)
}

fn served_by(registry: &ModelRegistry, name: &str) -> String {
    registry.resolve(Some(name), None).unwrap().id.clone()
}

async fn until_gone(registry: &ModelRegistry, id: &str) {
    let mut changes = registry.changes();
    tokio::time::timeout(Duration::from_secs(10), async {
        while registry.status(id).is_some() {
            changes.changed().await.unwrap();
        }
    })
    .await
    .expect("the version is removed");
}

#[tokio::test]
async fn versions_load_and_aliases_route_by_their_weights() {
    let registry = registry(Arc::default(), Duration::from_secs(5));
    let changes = registry.apply(spec(TWO)).unwrap();
    assert!(changes.contains(&"load m@v1".to_string()), "{changes:?}");
    registry.settled().await;
    for _ in 0..50 {
        assert_eq!(served_by(&registry, "chat"), "m@v1");
    }
    // The model's own name routes to its first version; a version id to itself; no name to the default.
    assert_eq!(served_by(&registry, "m"), "m@v1");
    assert_eq!(served_by(&registry, "m@v2"), "m@v2");
    let routed = registry.resolve(None, None).unwrap();
    assert_eq!(
        (routed.requested.as_str(), routed.id.as_str()),
        ("m", "m@v1")
    );
    assert!(matches!(
        registry.resolve(Some("nope"), None),
        Err(ApiError::ModelNotFound(_))
    ));
    let ids: Vec<String> = registry.list().into_iter().map(|m| m.id).collect();
    assert_eq!(ids, ["m", "chat", "m@v1", "m@v2"]);
    assert!(registry.readiness().iter().all(|a| a.ready));
}

#[tokio::test]
async fn new_weights_wait_for_a_loading_version_then_switch() {
    let loader = Arc::new(ScriptedLoader::default());
    let gate = loader.gate("m@v3");
    let registry = registry(loader, Duration::from_secs(5));
    registry.apply(spec(TWO)).unwrap();
    registry.settled().await;
    let v3 = VersionSpec {
        version: "v3".into(),
        ..registry.table().version("m@v1").unwrap().spec.clone()
    };
    registry.add_version(v3).unwrap();
    let active = registry
        .set_weights("chat", vec![("m@v1".into(), 0), ("m@v3".into(), 100)])
        .unwrap();
    assert!(!active, "v3 is still loading");
    assert_eq!(served_by(&registry, "chat"), "m@v1");
    assert!(registry.describe("chat").unwrap().pending_weights.is_some());
    gate.notify_one();
    registry.settled().await;
    assert_eq!(served_by(&registry, "chat"), "m@v3");
    assert!(registry.describe("chat").unwrap().pending_weights.is_none());
    // Roll back returns to the weights before the switch, once.
    registry.roll_back("chat").unwrap();
    assert_eq!(served_by(&registry, "chat"), "m@v1");
    assert!(matches!(
        registry.roll_back("chat"),
        Err(RegistryError::NothingToRollBack(_))
    ));
}

#[tokio::test]
async fn a_removed_version_lives_until_its_last_request_ends() {
    let registry = registry(Arc::default(), Duration::from_secs(30));
    registry.apply(spec(TWO)).unwrap();
    registry.settled().await;
    assert!(matches!(
        registry.remove_version("m@v1"),
        Err(RegistryError::VersionInUse { .. })
    ));
    let in_flight = registry.resolve(Some("chat"), None).unwrap();
    let engine = Arc::downgrade(&in_flight.engine);
    registry
        .set_weights("chat", vec![("m@v2".into(), 100)])
        .unwrap();
    registry.set_weights("m", vec![("m@v2".into(), 1)]).unwrap();
    registry.remove_version("m@v1").unwrap();
    assert_eq!(registry.status("m@v1"), Some(VersionStatus::Draining));
    // Not routable any more, by alias or by id; the request in flight still has it.
    assert_eq!(served_by(&registry, "chat"), "m@v2");
    assert!(matches!(
        registry.resolve(Some("m@v1"), None),
        Err(ApiError::ModelNotFound(_))
    ));
    tokio::time::sleep(DRAIN_POLL * 4).await;
    assert_eq!(registry.status("m@v1"), Some(VersionStatus::Draining));
    assert!(engine.upgrade().is_some());
    drop(in_flight);
    until_gone(&registry, "m@v1").await;
    assert!(
        engine.upgrade().is_none(),
        "the engine is dropped with its last request"
    );
}

#[tokio::test]
async fn the_drain_timeout_ends_what_is_left() {
    let registry = registry(Arc::default(), Duration::from_millis(200));
    registry.apply(spec(TWO)).unwrap();
    registry.settled().await;
    let in_flight = registry.resolve(Some("m@v2"), None).unwrap();
    let mut permit = in_flight.admission.admit(1).await.unwrap();
    registry.remove_version("m@v2").unwrap();
    // The drain timeout ends the request: its permit says so, and then it lets go of the version.
    tokio::time::timeout(Duration::from_secs(5), permit.aborted())
        .await
        .expect("ended after the drain timeout");
    drop((permit, in_flight));
    until_gone(&registry, "m@v2").await;
}

#[tokio::test]
async fn reload_applies_only_what_the_file_changed_and_refuses_a_bad_spec_whole() {
    let registry = registry(Arc::default(), Duration::from_secs(5));
    registry.apply(spec(TWO)).unwrap();
    registry.settled().await;
    // The same file: nothing.
    assert_eq!(registry.apply(spec(TWO)).unwrap(), Vec::<String>::new());
    // An operator's shift survives a reload of an unchanged file.
    registry
        .set_weights("chat", vec![("m@v1".into(), 50), ("m@v2".into(), 50)])
        .unwrap();
    registry.apply(spec(TWO)).unwrap();
    let weight_of_v2 = |r: &ModelRegistry| r.describe("chat").unwrap().weights.unwrap()["m@v2"];
    assert_eq!(weight_of_v2(&registry), 50);
    // A version whose definition changed is refused, and nothing else in that file is applied.
    let changed = TWO
        .replace("source = \"org/two\"", "source = \"org/other\"")
        .replace("\"m@v2\" = 0", "\"m@v2\" = 7");
    assert!(matches!(
        registry.apply(spec(&changed)),
        Err(RegistryError::VersionChanged(_))
    ));
    assert_eq!(weight_of_v2(&registry), 50);
    // v1 leaves the file while `chat` still routes to it: it serves until the new weights are in force.
    let next = r#"
        [[models]]
        name = "m"
        [[models.versions]]
        version = "v2"
        source = "org/two"
        [[models.versions]]
        version = "v3"
        source = "org/three"
        [aliases]
        chat = { "m@v3" = 100 }
    "#;
    let changes = registry.apply(spec(next)).unwrap();
    assert!(changes.contains(&"load m@v3".to_string()), "{changes:?}");
    assert!(changes.contains(&"unload m@v1".to_string()), "{changes:?}");
    registry.settled().await;
    assert_eq!(served_by(&registry, "chat"), "m@v3");
    until_gone(&registry, "m@v1").await;
}

#[tokio::test]
async fn a_version_that_fails_to_load_is_failed_and_the_others_serve() {
    let registry = registry(Arc::default(), Duration::from_secs(5));
    let text = TWO.replace("org/two", "org/broken");
    registry.apply(spec(&text)).unwrap();
    registry.settled().await;
    assert!(matches!(
        registry.status("m@v2"),
        Some(VersionStatus::Failed(reason)) if reason.contains("broken on purpose")
    ));
    assert_eq!(served_by(&registry, "chat"), "m@v1");
    assert!(matches!(
        registry.resolve(Some("m@v2"), None),
        Err(ApiError::ModelNotReady)
    ));
    assert!(matches!(
        registry.set_weights("chat", vec![("m@v2".into(), 10)]),
        Err(RegistryError::VersionFailed(_))
    ));
    registry.remove_version("m@v2").unwrap();
    assert_eq!(registry.status("m@v2"), None);
}
