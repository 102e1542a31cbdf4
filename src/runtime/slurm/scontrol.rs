//! What Slurm says about a job, parsed once: `scontrol show job -o` (its state, reason, exit and node) and, for a
//! job the controller has forgotten, `sacct` (its final state and exit, where the cluster keeps accounting).

/// The fields of `scontrol show job -o` that matter here.
#[derive(Debug, PartialEq, Eq)]
pub struct JobRecord {
    pub state: String,
    pub reason: Option<String>,
    pub exit: (i32, i32),
    pub node: Option<String>,
    pub comment: Option<String>,
}

/// Parses one line of `scontrol show job -o`.
pub fn parse_job(line: &str) -> Option<JobRecord> {
    let field = |name: &str| {
        line.split_whitespace()
            .find_map(|w| w.strip_prefix(name).and_then(|v| v.strip_prefix('=')))
            .map(str::to_owned)
    };
    let state = field("JobState")?;
    let exit = field("ExitCode")
        .and_then(|e| {
            let (code, sig) = e.split_once(':')?;
            Some((code.parse().ok()?, sig.parse().ok()?))
        })
        .unwrap_or((0, 0));
    let none = |v: Option<String>| v.filter(|v| v != "None" && v != "(null)" && !v.is_empty());
    Some(JobRecord {
        state,
        reason: none(field("Reason")),
        exit,
        node: none(field("NodeList")),
        comment: none(field("Comment")),
    })
}

/// The arguments of the `sacct` call that asks accounting how job `id` ended (one line: `ID|STATE|E:S`).
pub(super) fn sacct_args(id: &str) -> [&str; 7] {
    ["-X", "-n", "-P", "-o", "JobID,State,ExitCode", "-j", id]
}

/// How job `id` ended, from `sacct`'s answer to [`sacct_args`]: `None` when accounting does not know it as ended
/// (no line for it, or a state it can still leave).
pub fn parse_sacct(text: &str, id: &str) -> Option<JobRecord> {
    text.lines().find_map(|line| {
        let mut fields = line.trim().split('|');
        let (job, state, exit) = (fields.next()?, fields.next()?, fields.next()?);
        // "CANCELLED by 0": the word is the state.
        let state = state.split_whitespace().next()?;
        if job != id || !is_final(state) {
            return None;
        }
        let (code, sig) = exit.split_once(':')?;
        Some(JobRecord {
            state: state.to_owned(),
            reason: None,
            exit: (code.parse().ok()?, sig.parse().ok()?),
            node: None,
            comment: None,
        })
    })
}

/// States a job does not leave.
pub(super) fn is_final(state: &str) -> bool {
    !matches!(
        state,
        "PENDING"
            | "CONFIGURING"
            | "RUNNING"
            | "COMPLETING"
            | "SUSPENDED"
            | "REQUEUED"
            | "RESIZING"
            | "SIGNALING"
            | "STAGE_OUT"
            | "STOPPED"
            | "REQUEUE_HOLD"
            | "REQUEUE_FED"
            | "RESV_DEL_HOLD"
            | "SPECIAL_EXIT"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sacct_tells_how_a_forgotten_job_ended() {
        let done = parse_sacct("41|COMPLETED|0:0\n", "41").unwrap();
        assert_eq!((done.state.as_str(), done.exit), ("COMPLETED", (0, 0)));
        assert_eq!(parse_sacct("42|FAILED|3:0", "42").unwrap().exit, (3, 0));
        let cancelled = parse_sacct("43|CANCELLED by 0|0:15", "43").unwrap();
        assert_eq!((cancelled.state.as_str(), cancelled.exit), ("CANCELLED", (0, 15)));
        assert_eq!(
            parse_sacct("44|RUNNING|0:0", "44"),
            None,
            "not ended: accounting does not decide"
        );
        assert_eq!(parse_sacct("45|COMPLETED|0:0", "46"), None, "another job's line");
        assert_eq!(parse_sacct("", "47"), None);
    }

    #[test]
    fn scontrol_lines_give_state_reason_exit_and_node() {
        let line = "JobId=7 JobName=x JobState=FAILED Reason=NonZeroExitCode Dependency=(null) ExitCode=3:0 \
                    NodeList=vm BatchHost=vm";
        assert_eq!(
            parse_job(line),
            Some(JobRecord {
                state: "FAILED".into(),
                reason: Some("NonZeroExitCode".into()),
                exit: (3, 0),
                node: Some("vm".into()),
                comment: None,
            })
        );
        let pending = parse_job("JobId=8 JobState=PENDING Reason=Resources ExitCode=0:0 NodeList=(null)").unwrap();
        assert_eq!((pending.reason.as_deref(), pending.node), (Some("Resources"), None));
        assert_eq!(
            parse_job("JobId=9 JobState=CANCELLED Reason=None ExitCode=0:15")
                .unwrap()
                .exit,
            (0, 15)
        );
        assert!(parse_job("slurm_load_jobs error: Invalid job id specified").is_none());
    }
}
