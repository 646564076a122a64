//! The names of models, versions, aliases and keys: what clients type in `model`, and what metrics carry
//! as labels, so bounded in length and alphabet.

/// Model, version and alias names: what clients type in `model` and what metrics carry as labels.
pub fn check_name(what: &str, name: &str) -> Result<(), String> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || "-_.:/".contains(c);
    if name.is_empty() || name.len() > 128 || !name.chars().all(allowed) {
        return Err(format!(
            "{what} `{name}` must be 1–128 characters of letters, digits and `-_.:/`"
        ));
    }
    Ok(())
}
