//! Reload: applies a models spec as the difference from the spec applied last (new versions load, removed
//! ones retire, changed aliases take their new weights), checked whole first so that a refused spec
//! changes nothing.

use super::handle::ModelRegistry;
use super::table::{describe, set_pending, State, VersionEntry};
use crate::config::models::{ModelsSpec, VersionSpec};
use crate::models::error::RegistryError;

impl ModelRegistry {
    // --- changes --------------------------------------------------------------------------------------

    /// Applies `next` as the difference from the spec applied last: new versions load, versions it no
    /// longer names drain (once no alias routes to them), aliases it changed take their new weights (once
    /// their versions are ready). Checked whole first: a refused spec changes nothing. Returns what it
    /// changed, one line each.
    pub fn apply(&self, next: ModelsSpec) -> Result<Vec<String>, RegistryError> {
        let (changes, loads) = self.apply_to_table(next)?;
        for (spec, token) in loads {
            self.spawn_load(spec, token);
        }
        Ok(changes)
    }

    /// [`Self::apply`] without starting the loads it needs: they are returned.
    #[allow(clippy::type_complexity)]
    fn apply_to_table(
        &self,
        next: ModelsSpec,
    ) -> Result<(Vec<String>, Vec<(VersionSpec, u64)>), RegistryError> {
        let mut changes = Vec::new();
        let mut loads = Vec::new();
        {
            let mut table = self.table_mut();
            let previous = table.applied.clone();
            for version in &next.versions {
                let id = version.id();
                match table.version(&id) {
                    Some(entry) if matches!(entry.state, State::Draining { .. }) => {
                        return Err(RegistryError::VersionDraining(id))
                    }
                    Some(entry) if entry.spec != *version => {
                        return Err(RegistryError::VersionChanged(id))
                    }
                    _ => {}
                }
            }
            // All checked: from here on, only changes.
            for version in &next.versions {
                let id = version.id();
                if let Some(entry) = table.version_mut(&id) {
                    // Named again after a reload that removed it: it stays.
                    entry.retiring = false;
                    continue;
                }
                if previous.version(&id).is_some() {
                    // Unloaded through the admin API since the last reload, which did not change it.
                    continue;
                }
                let token = table.next_token;
                table.next_token += 1;
                table.versions.push(VersionEntry {
                    spec: version.clone(),
                    id: id.clone(),
                    state: State::Loading,
                    token,
                    created: crate::ids::unix_now(),
                    retiring: false,
                });
                loads.push((version.clone(), token));
                changes.push(format!("load {id}"));
            }
            for alias in &next.aliases {
                if previous.alias(&alias.name) == Some(alias) {
                    continue;
                }
                changes.push(format!(
                    "alias {} → {}",
                    alias.name,
                    describe(&alias.weights)
                ));
                set_pending(&mut table, alias);
            }
            let removed_aliases: Vec<String> = previous
                .aliases
                .iter()
                .filter(|a| next.alias(&a.name).is_none())
                .map(|a| a.name.clone())
                .collect();
            for name in removed_aliases {
                changes.push(format!("remove alias {name}"));
                table.aliases.retain(|a| a.name != name);
            }
            for version in &previous.versions {
                let id = version.id();
                if next.version(&id).is_none() {
                    if let Some(entry) = table.version_mut(&id) {
                        entry.retiring = true;
                        changes.push(format!("unload {id}"));
                    }
                }
            }
            if table.default_alias != next.default_alias {
                changes.push(format!("default model → {}", next.default_alias));
                table.default_alias = next.default_alias.clone();
            }
            table.applied = next;
            self.settle(&mut table);
        }
        for spec in &loads {
            self.declare(&spec.0);
        }
        self.bump();
        Ok((changes, loads))
    }

    /// Tests of the layers above: applies a spec whose versions stay loading until [`Self::finish_load`].
    #[cfg(test)]
    pub fn apply_without_loading(&self, next: ModelsSpec) {
        self.apply_to_table(next).expect("a valid spec");
    }

    /// Tests of the layers above: a version of the spec applied last is loaded with this engine.
    #[cfg(test)]
    pub fn finish_load(&self, id: &str, engine: std::sync::Arc<dyn crate::engine::Engine>) {
        let (spec, token) = {
            let table = self.table();
            let entry = table.version(id).expect("a version of the applied spec");
            (entry.spec.clone(), entry.token)
        };
        self.loaded(&spec, token, Ok(engine), None);
    }
}
