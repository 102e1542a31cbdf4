//! The rules for the names a catalog entry carries: workflow names and environment variable names. Both the
//! config file and discovered metadata check names here, so this file uses nothing else of the catalog.

/// Whether `name` is a usable workflow name: 1-64 letters, digits, `_`, `-`, `.`, starting with a letter or digit.
pub fn valid_workflow_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        && name.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
}

/// Whether `name` can be an environment variable name.
pub fn valid_env_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 256
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !name.starts_with(|c: char| c.is_ascii_digit())
}
