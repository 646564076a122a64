//! What the registry's changes (the admin API, reload) can be refused for; its own module so that the
//! shared `ApiError` can name it without importing the registry.

/// What the admin API and reload can be refused for.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum RegistryError {
    #[error("`{0}` already exists; versions are immutable: add a new version name")]
    VersionExists(String),
    #[error(
        "`{0}` changed in the models file; versions are immutable: add it under a new version name"
    )]
    VersionChanged(String),
    #[error("no version `{0}`")]
    UnknownVersion(String),
    #[error("no alias `{0}`")]
    UnknownAlias(String),
    #[error("`{id}` still takes traffic from {aliases}: shift its weight to 0 (or promote another version) first")]
    VersionInUse { id: String, aliases: String },
    #[error("`{0}` is draining; wait until it is unloaded")]
    VersionDraining(String),
    #[error("`{0}` failed to load; remove it and load it again")]
    VersionFailed(String),
    #[error("alias `{0}` has no earlier weights to roll back to")]
    NothingToRollBack(String),
    #[error("{0}")]
    Invalid(String),
}
