//! The Slurm runtime: an execution is a batch job. A generated script sets exactly the workflow's environment,
//! checks its folder and program (Slurm falls back to /tmp silently when `--chdir` fails, and a missing program
//! is only an exit code), then `exec`s the exact argv — never a shell string. `sbatch --parsable` reads it on
//! its stdin (it is never a file anyone could swap); the job's output files, in a private job folder of a spool
//! the server and the compute nodes both see, are followed into pipes, so the engine drains them into the log
//! store exactly as a local process's pipes; `scontrol show job` says where it stands (PENDING and why, RUNNING
//! where) and how it ended (`ExitCode=E:S`); `scancel` stops it: TERM to the batch shell and its steps
//! (`--full`), then KILL (`--batch`), then plain `scancel` as the last resort. The same commands run on a login
//! host over `ssh` when the workflow names one. A job folder goes when its output is in the execution's log.

mod commands;
mod job;
mod output;
mod poller;
mod runtime;
mod scontrol;
mod script;
mod spool;

pub use commands::sh_quote;
pub use runtime::{KIND, SlurmRuntime};
pub use scontrol::{JobRecord, parse_job};
pub use spool::Spool;
