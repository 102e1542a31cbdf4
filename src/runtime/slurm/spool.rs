//! Job folders: the spool they live in (refused when someone else could write to it), each job's own private
//! folder and output files, and their removal (never through a symlink, never someone else's).

use std::fs;
use std::io;
use std::os::unix::ffi::OsStringExt;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::runtime::RuntimeError;

/// Where job folders go when a workflow names no `spool_dir`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Spool {
    /// This folder (`slurm/` in the state directory).
    Dir(PathBuf),
    /// A private temporary folder, made on first use and removed when the server exits (`--ephemeral`).
    Temporary,
}

/// Refuses a spool someone else could put files in or swap ours in: one not owned by this user, or writable by
/// others without the sticky bit (which keeps them from renaming or removing what is ours).
pub(super) fn check_spool(dir: &Path) -> Result<(), RuntimeError> {
    let meta = fs::metadata(dir)
        .map_err(|e| RuntimeError::CannotStart(format!("cannot use the Slurm spool folder {}: {e}", dir.display())))?;
    let me = current_uid();
    let fix = "set \"spool_dir\" to a folder of your own with mode 0700 (or sticky, like 1777)";
    if !meta.is_dir() {
        return Err(RuntimeError::CannotStart(format!(
            "the Slurm spool {} is not a folder; {fix}",
            dir.display()
        )));
    }
    if meta.uid() != me {
        return Err(RuntimeError::CannotStart(format!(
            "the Slurm spool folder {} is owned by uid {}, not by this user (uid {me}), who could swap the job's \
             files; {fix}",
            dir.display(),
            meta.uid()
        )));
    }
    let mode = meta.mode() & 0o7777;
    if mode & 0o022 != 0 && mode & 0o1000 == 0 {
        return Err(RuntimeError::CannotStart(format!(
            "the Slurm spool folder {} is writable by others (mode {mode:04o}) without the sticky bit, so they could \
             swap the job's files; make it private (chmod 0700 {}) or {fix}",
            dir.display(),
            dir.display()
        )));
    }
    Ok(())
}

pub(super) fn current_uid() -> u32 {
    // SAFETY: geteuid cannot fail.
    unsafe { libc::geteuid() }
}

/// A new private folder with an unpredictable name in the temporary folder, as `mkdtemp` makes it (0700,
/// created exclusively: a folder someone made first is never used).
pub(super) fn make_temporary_spool() -> Result<PathBuf, RuntimeError> {
    let tmp = std::path::absolute(std::env::temp_dir()).unwrap_or_else(|_| std::env::temp_dir());
    let template = tmp.join("workflow-mcp-slurm-XXXXXX");
    let template = std::ffi::CString::new(template.as_os_str().as_encoded_bytes()).map_err(|_| {
        RuntimeError::CannotStart(format!("the temporary folder {} has a NUL in its name", tmp.display()))
    })?;
    let mut bytes = template.into_bytes_with_nul();
    // SAFETY: mkdtemp rewrites the XXXXXX of a NUL-terminated buffer it may write to.
    if unsafe { libc::mkdtemp(bytes.as_mut_ptr().cast()) }.is_null() {
        return Err(RuntimeError::CannotStart(format!(
            "cannot create a temporary Slurm spool folder in {}: {}; set TMPDIR, or \"spool_dir\" for the workflow",
            tmp.display(),
            io::Error::last_os_error()
        )));
    }
    bytes.pop();
    Ok(PathBuf::from(std::ffi::OsString::from_vec(bytes)))
}

/// A job's own folder (0700), new: one that exists already — a folder or a symlink someone else put there — is
/// refused, never used.
pub(super) fn create_job_folder(spool: &Path, marker: &str) -> Result<PathBuf, RuntimeError> {
    let dir = spool.join(marker);
    match fs::DirBuilder::new().mode(0o700).create(&dir) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            return Err(RuntimeError::CannotStart(format!(
                "the job folder {} exists already, but a job folder is always new: something else made it; \
                 remove it, and check who can write to {}",
                dir.display(),
                spool.display()
            )));
        }
        Err(e) => {
            return Err(RuntimeError::CannotStart(format!(
                "cannot create the job folder {}: {e}",
                dir.display()
            )));
        }
    }
    // The umask may have taken more than group and others' bits.
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o700))
        .map_err(|e| RuntimeError::CannotStart(format!("cannot make the job folder {} private: {e}", dir.display())))?;
    Ok(dir)
}

/// Creates an empty private file (0600) that must not exist yet: Slurm then writes the job's output into it and
/// keeps its mode (slurmd would otherwise create it with the job's umask, readable by all).
pub(super) fn create_private_file(path: &Path) -> Result<(), RuntimeError> {
    fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .map(drop)
        .map_err(|e| RuntimeError::CannotStart(format!("cannot create the job's output file {}: {e}", path.display())))
}

/// Removes a job folder of ours (never through a symlink, never someone else's).
pub(super) fn remove_job_folder(dir: &Path) {
    let ours = fs::symlink_metadata(dir).is_ok_and(|m| m.is_dir() && m.uid() == current_uid());
    if ours && let Err(e) = fs::remove_dir_all(dir) {
        tracing::warn!(folder = %dir.display(), error = %e, "cannot remove a Slurm job folder");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_job_folder_that_exists_or_is_a_symlink_is_refused() {
        let spool = std::env::temp_dir().join(format!("wfmcp-job-folder-{}", std::process::id()));
        let _ = fs::remove_dir_all(&spool);
        fs::create_dir(&spool).unwrap();
        let elsewhere = spool.join("elsewhere");
        fs::create_dir(&elsewhere).unwrap();
        fs::create_dir(spool.join("taken")).unwrap();
        std::os::unix::fs::symlink(&elsewhere, spool.join("swapped")).unwrap();
        for name in ["taken", "swapped"] {
            let e = create_job_folder(&spool, name).unwrap_err().to_string();
            assert!(e.contains("exists already") && e.contains(name), "{e}");
        }
        let dir = create_job_folder(&spool, "new").unwrap();
        assert_eq!(fs::metadata(&dir).unwrap().mode() & 0o7777, 0o700);
        create_private_file(&dir.join("stdout")).unwrap();
        assert_eq!(fs::metadata(dir.join("stdout")).unwrap().mode() & 0o7777, 0o600);
        std::os::unix::fs::symlink(elsewhere.join("x"), dir.join("stderr")).unwrap();
        assert!(
            create_private_file(&dir.join("stderr")).is_err(),
            "an output file is never a symlink"
        );
        assert_eq!(
            fs::read_dir(&elsewhere).unwrap().count(),
            0,
            "nothing was written through a symlink"
        );
        fs::remove_dir_all(&spool).unwrap();
    }
}
