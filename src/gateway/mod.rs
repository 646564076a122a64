//! What stands between a validated request and the engine: for now, the in-flight accounting.

pub mod limits;
