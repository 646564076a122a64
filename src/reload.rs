//! Applies the models file again when its content changes, as SIGHUP does: a Kubernetes ConfigMap (keys,
//! weights, versions) mounted as a directory changes under a running pod, which nobody signals.
//!
//! The content is compared, not the modification time: the kubelet swaps a symlink to a new directory, so
//! the file's own metadata may not move, and an editor that rewrites the same bytes changes nothing.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::Path;
use std::time::Duration;

use actix_web::web;

use crate::state::AppState;

/// Checks the models file every `every` and reloads it when its content changed since the last look.
pub fn spawn_models_file_watch(state: web::Data<AppState>, path: &Path, every: Duration) {
    let path = path.to_path_buf();
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return;
    };
    let mut seen = fingerprint(&path);
    runtime.spawn(async move {
        loop {
            tokio::time::sleep(every).await;
            let now = fingerprint(&path);
            // A file that cannot be read (mid-swap, removed) is not a change: the next look decides.
            if now.is_none() || now == seen {
                continue;
            }
            seen = now;
            tracing::info!(path = %path.display(), "the models file changed: reloading it");
            // Refusals are logged where they are decided; the server serves on either way.
            let _ = state.reload_models_file();
        }
    });
}

fn fingerprint(path: &Path) -> Option<u64> {
    let bytes = std::fs::read(path).ok()?;
    let mut hasher = DefaultHasher::new();
    bytes.hash(&mut hasher);
    Some(hasher.finish())
}
