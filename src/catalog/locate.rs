//! Finding the config file when none is given: `workflow-mcp.json` in the project folder or a folder above it up
//! to the repository root, else the user's `$XDG_CONFIG_HOME/workflow-mcp/config.json`. A file found in the
//! project is the repository's to change, so it runs nothing until trusted (see `trust`).

use std::path::{Path, PathBuf};

/// The file name looked for in the project folder and the folders above it. Visible, not hidden: it names
/// commands that will run, and a reader of the repository should see it (as `justfile` and `Taskfile.yml` are).
pub const PROJECT_CONFIG: &str = "workflow-mcp.json";

/// How the config file in use was chosen.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Origin {
    /// `--config FILE` (or `$WORKFLOW_MCP_CONFIG`): the user named it, so it is trusted as it is.
    Given,
    /// Found by walking up from the project folder: the repository supplies it, so it runs nothing until trusted.
    Project,
    /// The user's own `$XDG_CONFIG_HOME/workflow-mcp/config.json`: only the user writes there, so it is trusted.
    User,
}

/// A config file found, and how.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Located {
    pub path: PathBuf,
    pub origin: Origin,
}

/// The project folder: `--project DIR`, else `$CLAUDE_PROJECT_DIR`, else the working directory.
pub fn project_dir(given: Option<&Path>) -> PathBuf {
    let dir = given
        .map(Path::to_path_buf)
        .or_else(|| {
            std::env::var_os("CLAUDE_PROJECT_DIR")
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        })
        .or_else(|| std::env::current_dir().ok())
        .unwrap_or_else(|| PathBuf::from("."));
    std::path::absolute(&dir).unwrap_or(dir)
}

/// The folders searched for [`PROJECT_CONFIG`], nearest first: from `project` up to the repository root (the
/// nearest folder holding `.git`), never above it. Outside a repository only `project` itself is searched, so a
/// config in a shared parent (`/tmp`, a home folder) is never picked up by accident.
pub fn search_dirs(project: &Path) -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    for dir in project.ancestors() {
        dirs.push(dir.to_path_buf());
        if dir.join(".git").exists() {
            return dirs;
        }
    }
    vec![project.to_path_buf()]
}

/// The user's own config: `$XDG_CONFIG_HOME/workflow-mcp/config.json`, else `~/.config/workflow-mcp/config.json`.
pub fn user_config() -> Option<PathBuf> {
    let from = |var: &str| std::env::var_os(var).filter(|v| !v.is_empty()).map(PathBuf::from);
    from("XDG_CONFIG_HOME")
        .filter(|p| p.is_absolute())
        .or_else(|| from("HOME").map(|h| h.join(".config")))
        .map(|base| base.join("workflow-mcp").join("config.json"))
}

/// The config file to use when none is given, or `None` when there is none.
pub fn locate(project: &Path) -> Option<Located> {
    let found = search_dirs(project)
        .into_iter()
        .map(|d| d.join(PROJECT_CONFIG))
        .find(|p| p.is_file());
    if let Some(path) = found {
        return Some(Located {
            path,
            origin: Origin::Project,
        });
    }
    user_config().filter(|p| p.is_file()).map(|path| Located {
        path,
        origin: Origin::User,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_search_stops_at_the_repository_root_and_outside_a_repository_stays_in_the_folder() {
        let root = std::env::temp_dir().join(format!("wfmcp-locate-{}", std::process::id()));
        let deep = root.join("repo/a/b");
        std::fs::create_dir_all(&deep).unwrap();
        assert_eq!(
            search_dirs(&deep),
            vec![deep.clone()],
            "no .git above: only the folder itself"
        );
        std::fs::create_dir_all(root.join("repo/.git")).unwrap();
        assert_eq!(
            search_dirs(&deep),
            vec![deep.clone(), root.join("repo/a"), root.join("repo")],
            "up to the folder holding .git, not above"
        );
        std::fs::write(root.join(PROJECT_CONFIG), "{}").unwrap();
        std::fs::write(root.join("repo/a").join(PROJECT_CONFIG), "{}").unwrap();
        assert_eq!(locate(&deep).unwrap().path, root.join("repo/a").join(PROJECT_CONFIG));
        std::fs::remove_dir_all(&root).unwrap();
    }
}
