//! The rules for the names a catalog entry carries: workflow, param and environment variable names. Both the
//! config file and discovered metadata check names here (one rule for both), so this file uses nothing else of
//! the catalog.

/// Whether `name` is a usable workflow name: 1-64 letters, digits, `_`, `-`, `.`, starting with a letter or digit.
pub fn valid_workflow_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        && name.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
}

/// The param name rule, as said in error messages.
pub const PARAM_NAME_RULE: &str = "1-64 characters of letters, digits, '_', '-', '.'";

/// Whether `name` is a usable param name (a manifest param or a discovered field): [`PARAM_NAME_RULE`].
///
/// An agent passes a param as a key of a JSON object and the key is a property of the workflow's params schema,
/// so the name must survive every client: Anthropic's API refuses a whole request whose tool schema has a property
/// key outside `^[a-zA-Z0-9_.-]{1,64}$`. These names also read unquoted in text, contain no `=` (`--param k=v`)
/// and no space or quote.
pub fn valid_param_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

/// Whether `name` can be an environment variable name.
pub fn valid_env_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 256
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !name.starts_with(|c: char| c.is_ascii_digit())
}
