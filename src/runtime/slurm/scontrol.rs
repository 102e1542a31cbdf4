//! What `scontrol show job -o` says about a job, parsed once: its state, reason, exit and node.

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
