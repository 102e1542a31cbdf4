//! The job script: exactly the workflow's environment, its folder and program checked on the node (a failure
//! written to the start-error file), then `exec` of the exact argv.

use std::path::Path;
use std::time::Duration;

use super::commands::sh_quote;
use crate::runtime::Launch;
use crate::runtime::placement::SlurmOptions;

/// Written by the job script when it cannot start the program (its folder or the program is missing).
pub(super) const START_ERROR_FILE: &str = "start-error";

/// The job script: the exact environment, the folder and program checked, then `exec` of the exact argv.
pub(super) fn job_script(launch: &Launch, start_error: &Path) -> String {
    let mut s = String::from("#!/bin/sh\n");
    s.push_str(&format!(
        "# workflow-mcp execution {}: runs the workflow's argv exactly, with exactly its environment.\n",
        launch.marker
    ));
    // Only Slurm's own variables survive from the job's environment; the workflow's come next.
    s.push_str(
        "for name in $(env | sed -n 's/^\\([A-Za-z_][A-Za-z0-9_]*\\)=.*/\\1/p'); do\n  case \"$name\" in \
         SLURM_*|SLURMD_*) ;; *) unset \"$name\" 2>/dev/null ;; esac\ndone\n",
    );
    for (k, v) in launch.env.vars() {
        s.push_str(&format!("export {}\n", sh_quote(&format!("{k}={v}"))));
    }
    // The start error is the server's file: private, whatever the workflow's umask.
    let fail = |msg: &str| {
        format!(
            "{{ umask 077; printf '%s\\n' {} > {}; exit 127; }}",
            sh_quote(msg),
            sh_quote(&start_error.display().to_string())
        )
    };
    let cwd = launch.cwd.display().to_string();
    s.push_str(&format!(
        "cd -- {} 2>/dev/null || {}\n",
        sh_quote(&cwd),
        fail(&format!(
            "working directory {cwd} does not exist or is not a folder on the node that ran the job; fix \"cwd\" \
             in the config"
        ))
    ));
    let program = &launch.argv[0];
    if program.contains('/') {
        s.push_str(&format!(
            "[ -f {p} ] && [ -x {p} ] || {}\n",
            fail(&format!(
                "program {program} does not exist or is not executable on the node that ran the job"
            )),
            p = sh_quote(program)
        ));
    } else {
        s.push_str(&format!(
            "command -v -- {} >/dev/null 2>&1 || {}\n",
            sh_quote(program),
            fail(&format!(
                "command \"{program}\" was not found in PATH ({}) on the node that ran the job",
                launch.env.path()
            ))
        ));
    }
    let argv: Vec<String> = launch.argv.iter().map(|a| sh_quote(a)).collect();
    s.push_str(&format!("exec {}\n", argv.join(" ")));
    s
}

/// `--time` for a job: the configured one, else the timeout rounded up to minutes plus one (a backstop).
pub(super) fn time_limit(options: &SlurmOptions, timeout: Option<Duration>) -> Option<String> {
    options
        .time_limit
        .clone()
        .or_else(|| timeout.map(|t| (t.as_secs().div_ceil(60) + 1).to_string()))
}
