//! Environment variables a param may not be mapped to. Whoever calls a workflow chooses its param values, so a
//! param that sets one of these would let the caller run code of their choosing: the variable picks what the
//! loader or the C library loads, which program a command name runs, or what a shell, an interpreter or a tool
//! runs at startup. A manifest's own fixed `env` values are its author's choice and stay allowed.
//!
//! Sources: glibc's `UNSECURE_ENVVARS` (what the loader strips for setuid programs, less `TMPDIR`, which names a
//! folder for data), sudo's default `env_delete` list, and the startup variables of the common interpreters and of
//! git. No list knows every program: map a param to a variable only when the program reads it as data.

const LOADER: &str = "it changes how programs are loaded";
const LIBC: &str = "the C library reads files or settings from it in every program";
const TERMINAL: &str = "terminal libraries read terminal descriptions from it";
const LOOKUP: &str = "it chooses which program runs for each command name";
const SHELL: &str = "it changes how shells start or run scripts";
const INTERPRETER: &str = "it makes an interpreter load code or options at startup";
const COMMAND: &str = "programs run its value as a command";
const GIT_PROGRAMS: &str = "it chooses programs git runs";
const GIT_CONFIG: &str = "it adds git configuration, which can name commands git runs";

/// Each refused name (a trailing `*` matches any suffix) and why.
const REFUSED: &[(&str, &str)] = &[
    // The dynamic loader, on every platform sudo knows of, and the C library's code-loading hooks.
    ("LD_*", LOADER),
    ("DYLD_*", LOADER),
    ("_RLD*", LOADER),
    ("LDR_*", LOADER),
    ("LIBPATH", LOADER),
    ("SHLIB_PATH", LOADER),
    ("GCONV_PATH", LOADER),
    ("GETCONF_DIR", LOADER),
    ("GLIBC_TUNABLES", LOADER),
    // The rest of glibc's list: files and options the C library takes from the environment.
    ("LOCPATH", LIBC),
    ("NLSPATH", LIBC),
    ("PATH_LOCALE", LIBC),
    ("MALLOC_TRACE", LIBC),
    ("HOSTALIASES", LIBC),
    ("LOCALDOMAIN", LIBC),
    ("RES_OPTIONS", LIBC),
    ("RESOLV_HOST_CONF", LIBC),
    ("NIS_PATH", LIBC),
    ("TZDIR", LIBC),
    ("TERMINFO", TERMINAL),
    ("TERMINFO_DIRS", TERMINAL),
    ("TERMPATH", TERMINAL),
    ("TERMCAP", TERMINAL),
    // The command itself, when it is a bare name, is looked up in the workflow's PATH.
    ("PATH", LOOKUP),
    // Shells: files sourced at startup, options, trace prompts (expanded, so they run `$(...)`), word splitting.
    ("BASH_ENV", SHELL),
    ("ENV", SHELL),
    ("BASH_FUNC_*", SHELL),
    ("SHELLOPTS", SHELL),
    ("BASHOPTS", SHELL),
    ("PS4", SHELL),
    ("PROMPT_COMMAND", SHELL),
    ("IFS", SHELL),
    ("CDPATH", SHELL),
    ("GLOBIGNORE", SHELL),
    ("FPATH", SHELL),
    ("ZDOTDIR", SHELL),
    ("NULLCMD", SHELL),
    ("READNULLCMD", SHELL),
    ("TMPPREFIX", SHELL),
    // Interpreters: module search paths, startup files and extra command-line options.
    ("PYTHONPATH", INTERPRETER),
    ("PYTHONHOME", INTERPRETER),
    ("PYTHONSTARTUP", INTERPRETER),
    ("PYTHONINSPECT", INTERPRETER),
    ("PYTHONUSERBASE", INTERPRETER),
    ("PYTHONWARNINGS", INTERPRETER),
    ("PYTHONBREAKPOINT", INTERPRETER),
    ("PYTHONEXECUTABLE", INTERPRETER),
    ("PYTHONPLATLIBDIR", INTERPRETER),
    ("NODE_OPTIONS", INTERPRETER),
    ("NODE_PATH", INTERPRETER),
    ("PERL5OPT", INTERPRETER),
    ("PERL5LIB", INTERPRETER),
    ("PERLLIB", INTERPRETER),
    ("PERL5DB", INTERPRETER),
    ("PERLIO_DEBUG", INTERPRETER),
    ("RUBYOPT", INTERPRETER),
    ("RUBYLIB", INTERPRETER),
    ("JAVA_TOOL_OPTIONS", INTERPRETER),
    ("JDK_JAVA_OPTIONS", INTERPRETER),
    ("_JAVA_OPTIONS", INTERPRETER),
    ("CLASSPATH", INTERPRETER),
    ("DOTNET_STARTUP_HOOKS", INTERPRETER),
    ("CORECLR_*", INTERPRETER),
    ("LUA_INIT*", INTERPRETER),
    ("LUA_PATH*", INTERPRETER),
    ("LUA_CPATH*", INTERPRETER),
    ("PHPRC", INTERPRETER),
    ("PHP_INI_SCAN_DIR", INTERPRETER),
    ("R_PROFILE", INTERPRETER),
    ("R_PROFILE_USER", INTERPRETER),
    ("TCLLIBPATH", INTERPRETER),
    ("MAKEFLAGS", INTERPRETER),
    ("GNUMAKEFLAGS", INTERPRETER),
    ("MFLAGS", INTERPRETER),
    // Commands other programs run: editors, pagers, password prompts, git's transports and helpers.
    ("EDITOR", COMMAND),
    ("VISUAL", COMMAND),
    ("PAGER", COMMAND),
    ("BROWSER", COMMAND),
    ("SSH_ASKPASS", COMMAND),
    ("SUDO_ASKPASS", COMMAND),
    ("GIT_ASKPASS", COMMAND),
    ("GIT_EDITOR", COMMAND),
    ("GIT_SEQUENCE_EDITOR", COMMAND),
    ("GIT_PAGER", COMMAND),
    ("GIT_SSH", COMMAND),
    ("GIT_SSH_COMMAND", COMMAND),
    ("GIT_EXTERNAL_DIFF", COMMAND),
    ("GIT_PROXY_COMMAND", COMMAND),
    ("GIT_EXEC_PATH", GIT_PROGRAMS),
    ("GIT_TEMPLATE_DIR", GIT_PROGRAMS),
    ("GIT_CONFIG*", GIT_CONFIG),
];

/// Why a param may not set the environment variable `name`, or `None` when it may.
pub fn refused_env_var(name: &str) -> Option<&'static str> {
    REFUSED.iter().find_map(|(pattern, why)| {
        let matches = match pattern.strip_suffix('*') {
            Some(prefix) => name.starts_with(prefix),
            None => name == *pattern,
        };
        matches.then_some(*why)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loader_shell_and_interpreter_variables_are_refused_and_data_variables_are_not() {
        for name in [
            "LD_PRELOAD",
            "LD_LIBRARY_PATH",
            "LD_AUDIT",
            "DYLD_INSERT_LIBRARIES",
            "GCONV_PATH",
            "GLIBC_TUNABLES",
            "PATH",
            "BASH_ENV",
            "ENV",
            "PS4",
            "IFS",
            "BASH_FUNC_ls",
            "PYTHONSTARTUP",
            "PYTHONPATH",
            "NODE_OPTIONS",
            "PERL5OPT",
            "RUBYOPT",
            "JAVA_TOOL_OPTIONS",
            "LUA_INIT_5_4",
            "GIT_SSH_COMMAND",
            "GIT_CONFIG_COUNT",
        ] {
            assert!(refused_env_var(name).is_some(), "{name} must be refused");
        }
        for name in [
            "LOG_LEVEL",
            "RUST_LOG",
            "TMPDIR",
            "HOME",
            "LANG",
            "CI",
            "PYTHONUNBUFFERED",
            "GIT_AUTHOR_NAME",
            "PATHS",
            "LDFLAGS",
            "ENVIRONMENT",
        ] {
            assert_eq!(refused_env_var(name), None, "{name} is data");
        }
        assert_eq!(
            refused_env_var("LD_PRELOAD"),
            Some("it changes how programs are loaded")
        );
    }
}
