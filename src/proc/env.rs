//! The environment a child starts with — never this process's whole environment. An allow-list (`PATH`,
//! `HOME`, `LANG`, `LC_*`, …) and explicitly named variables are taken from this process, `NO_COLOR=1` is set,
//! then come the caller's own variables, and last the tree marker, which nothing can override.

use super::scan::TREE_MARKER;

/// Variables a child inherits from this process without being asked.
const ALLOWED: &[&str] = &[
    "PATH", "HOME", "LANG", "LANGUAGE", "TZ", "TMPDIR", "USER", "LOGNAME", "SHELL",
];
const DEFAULT_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

/// A child's environment, built in order; a later value for a name replaces the earlier one.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ChildEnv {
    vars: Vec<(String, String)>,
}

impl ChildEnv {
    /// The allow-list and `inherit` taken from this process's environment, `NO_COLOR=1`, and a default `PATH`
    /// when this process has none. Variables that are not valid UTF-8 are left out.
    pub fn inherited(inherit: &[String]) -> ChildEnv {
        Self::from_parent(
            std::env::vars_os().filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?))),
            inherit,
        )
    }

    fn from_parent(parent: impl Iterator<Item = (String, String)>, inherit: &[String]) -> ChildEnv {
        let mut env = ChildEnv::default();
        env.set("NO_COLOR", "1");
        for (k, v) in parent {
            if ALLOWED.contains(&k.as_str()) || k.starts_with("LC_") || inherit.contains(&k) {
                env.set(&k, &v);
            }
        }
        if env.get("PATH").is_none() {
            env.set("PATH", DEFAULT_PATH);
        }
        env
    }

    pub fn set(&mut self, name: &str, value: &str) {
        match self.vars.iter_mut().find(|(k, _)| k == name) {
            Some(slot) => slot.1 = value.to_owned(),
            None => self.vars.push((name.to_owned(), value.to_owned())),
        }
    }

    /// Sets each variable in order.
    pub fn extend<'a>(&mut self, vars: impl IntoIterator<Item = &'a (String, String)>) {
        for (k, v) in vars {
            self.set(k, v);
        }
    }

    /// Marks every process of the child's tree with `marker` (see [`TREE_MARKER`]); set last, so no earlier
    /// variable can forge or remove it.
    pub fn mark(&mut self, marker: &str) {
        self.set(TREE_MARKER, marker);
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// The `PATH` the child will search programs in.
    pub fn path(&self) -> &str {
        self.get("PATH").unwrap_or(DEFAULT_PATH)
    }

    pub fn vars(&self) -> &[(String, String)] {
        &self.vars
    }

    pub fn into_vars(self) -> Vec<(String, String)> {
        self.vars
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parent(vars: &[(&str, &str)]) -> impl Iterator<Item = (String, String)> {
        vars.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<Vec<_>>()
            .into_iter()
    }

    #[test]
    fn only_the_allow_list_and_named_variables_are_inherited() {
        let env = ChildEnv::from_parent(
            parent(&[
                ("PATH", "/p"),
                ("LC_ALL", "C"),
                ("SECRET", "x"),
                ("CARGO_HOME", "/c"),
                ("LD_PRELOAD", "/evil.so"),
            ]),
            &["CARGO_HOME".to_owned()],
        );
        assert_eq!(env.get("PATH"), Some("/p"));
        assert_eq!(env.get("LC_ALL"), Some("C"));
        assert_eq!(env.get("CARGO_HOME"), Some("/c"));
        assert_eq!(env.get("NO_COLOR"), Some("1"));
        assert_eq!((env.get("SECRET"), env.get("LD_PRELOAD")), (None, None));
    }

    #[test]
    fn later_values_win_and_the_marker_cannot_be_forged() {
        let mut env = ChildEnv::from_parent(parent(&[]), &[]);
        assert_eq!(env.path(), DEFAULT_PATH, "a default PATH when the parent has none");
        env.extend(&[
            (TREE_MARKER.to_owned(), "forged".to_owned()),
            ("PATH".to_owned(), "/mine".to_owned()),
        ]);
        env.mark("real");
        assert_eq!(env.get(TREE_MARKER), Some("real"));
        assert_eq!(env.path(), "/mine");
        assert_eq!(env.vars().iter().filter(|(k, _)| k == "PATH").count(), 1);
    }
}
