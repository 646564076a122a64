//! The admin API's changes: load a version beside the others, take one out of service, set an alias's
//! weights, roll an alias back to its weights before.

use super::handle::ModelRegistry;
use super::table::{set_pending, State, VersionEntry, VersionStatus};
use crate::config::file::check_weights;
use crate::config::models::{AliasSpec, VersionSpec};
use crate::models::error::RegistryError;

impl ModelRegistry {
    /// Loads a version beside the others (the admin API).
    pub fn add_version(&self, spec: VersionSpec) -> Result<(), RegistryError> {
        let id = spec.id();
        let token = {
            let mut table = self.table_mut();
            if table.version(&id).is_some() {
                return Err(RegistryError::VersionExists(id));
            }
            let token = table.next_token;
            table.next_token += 1;
            table.versions.push(VersionEntry {
                spec: spec.clone(),
                id,
                state: State::Loading,
                token,
                created: crate::ids::unix_now(),
                retiring: false,
            });
            token
        };
        self.declare(&spec);
        self.spawn_load(spec, token);
        self.bump();
        Ok(())
    }

    /// Takes a version out of service (the admin API): refused while an alias routes to it. Its running
    /// requests finish on it; then it is unloaded.
    pub fn remove_version(&self, id: &str) -> Result<(), RegistryError> {
        {
            let mut table = self.table_mut();
            let entry = table
                .version(id)
                .ok_or_else(|| RegistryError::UnknownVersion(id.to_string()))?;
            if matches!(entry.state, State::Draining { .. }) {
                return Err(RegistryError::VersionDraining(id.to_string()));
            }
            let aliases = table.aliases_routing_to(id);
            if !aliases.is_empty() {
                return Err(RegistryError::VersionInUse {
                    id: id.to_string(),
                    aliases: aliases
                        .iter()
                        .map(|a| format!("`{a}`"))
                        .collect::<Vec<_>>()
                        .join(", "),
                });
            }
            self.take_out(&mut table, id);
        }
        self.bump();
        Ok(())
    }

    /// New weights for an alias (the admin API); `Ok(true)` when they are in force now, `Ok(false)` when
    /// they wait for a version that is still loading.
    pub fn set_weights(
        &self,
        alias: &str,
        weights: Vec<(String, u32)>,
    ) -> Result<bool, RegistryError> {
        let active = {
            let mut table = self.table_mut();
            if table.alias(alias).is_none() {
                return Err(RegistryError::UnknownAlias(alias.to_string()));
            }
            check_weights(alias, &weights, |id| table.version(id).is_some())
                .map_err(RegistryError::Invalid)?;
            for (id, weight) in &weights {
                match table.status(id) {
                    _ if *weight == 0 => {}
                    Some(VersionStatus::Draining) => {
                        return Err(RegistryError::VersionDraining(id.clone()))
                    }
                    Some(VersionStatus::Failed(_)) => {
                        return Err(RegistryError::VersionFailed(id.clone()))
                    }
                    _ => {}
                }
                if table.version(id).is_some_and(|v| v.retiring) && *weight > 0 {
                    return Err(RegistryError::Invalid(format!(
                        "`{id}` was removed from the models file and is being unloaded"
                    )));
                }
            }
            set_pending(
                &mut table,
                &AliasSpec {
                    name: alias.to_string(),
                    weights: weights.clone(),
                },
            );
            self.settle(&mut table);
            table.alias(alias).is_some_and(|a| a.pending.is_none())
        };
        self.bump();
        Ok(active)
    }

    /// Returns an alias to its weights before the last change.
    pub fn roll_back(&self, alias: &str) -> Result<Vec<(String, u32)>, RegistryError> {
        let weights = {
            let mut table = self.table_mut();
            let entry = table
                .aliases
                .iter()
                .find(|a| a.name == alias)
                .ok_or_else(|| RegistryError::UnknownAlias(alias.to_string()))?;
            let previous = entry
                .history
                .last()
                .cloned()
                .ok_or_else(|| RegistryError::NothingToRollBack(alias.to_string()))?;
            if let Some((id, _)) = previous
                .iter()
                .find(|(id, w)| *w > 0 && table.ready(id).is_none())
            {
                return Err(RegistryError::Invalid(format!(
                    "cannot roll `{alias}` back: `{id}`, which it routed to, is no longer ready"
                )));
            }
            let entry = table
                .aliases
                .iter_mut()
                .find(|a| a.name == alias)
                .expect("found above");
            entry.history.pop();
            entry.active = previous.clone();
            entry.pending = None;
            self.settle(&mut table);
            previous
        };
        self.bump();
        Ok(weights)
    }
}
