//! Reading `/proc`: every process with its parent, group and state; the members of a process tree (its group,
//! the leader's descendants, and escaped processes re-parented to us that carry the tree's marker); signalling a
//! whole tree; and the processes holding given pipes open.

use std::collections::{HashMap, HashSet};

use super::signal::{PidFd, group_exists, signal_group, signal_process};
use super::spawn::own_children;

/// One process, as /proc/PID/stat describes it.
#[derive(Clone, Copy, Debug)]
pub struct ProcInfo {
    pub pid: u32,
    pub ppid: u32,
    pub pgid: u32,
    pub zombie: bool,
    /// When it started, in clock ticks after boot: with the pid, it names one process (pids are reused).
    pub start_time: u64,
}

/// Parses the text of `/proc/PID/stat`.
pub fn parse_stat(pid: u32, stat: &str) -> Option<ProcInfo> {
    // The command name may hold spaces and parentheses; the fields after the last ')' are fixed.
    let rest = stat.get(stat.rfind(')')? + 2..)?;
    let mut fields = rest.split(' ');
    let state = fields.next()?.chars().next()?;
    let ppid = fields.next()?.parse().ok()?;
    let pgid = fields.next()?.parse().ok()?;
    // Field 22 of stat; `state` was field 3.
    let start_time = fields.nth(22 - 6).and_then(|f| f.parse().ok()).unwrap_or(0);
    Some(ProcInfo {
        pid,
        ppid,
        pgid,
        zombie: state == 'Z' || state == 'X',
        start_time,
    })
}

/// One process, if it exists.
pub fn process(pid: u32) -> Option<ProcInfo> {
    parse_stat(pid, &std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// Whether `pid` is still the process that started at `start_time` and carries `marker`: the check before
/// signalling a process known only from history (its pid may have been reused since).
pub fn is_same_process(pid: u32, start_time: u64, marker: &str) -> bool {
    process(pid).is_some_and(|p| !p.zombie && p.start_time == start_time) && carries_marker(pid, marker)
}

/// Every process, read from /proc.
pub fn processes() -> Vec<ProcInfo> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| {
        let pid: u32 = e.ok()?.file_name().to_str()?.parse().ok()?;
        parse_stat(pid, &std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
    })
    .collect()
}

/// The environment variable that marks every process of a tree (descendants inherit it), so the ones that
/// leave the process group can still be found.
pub const TREE_MARKER: &str = "WORKFLOW_MCP_EXECUTION_ID";

fn carries_marker(pid: u32, marker: &str) -> bool {
    marker_of(pid).is_some_and(|m| m == marker)
}

/// The tree marker in a process's environment, if it carries one (read once, whatever is looked for).
fn marker_of(pid: u32) -> Option<String> {
    let environ = std::fs::read(format!("/proc/{pid}/environ")).ok()?;
    let prefix = format!("{TREE_MARKER}=");
    environ
        .split(|b| *b == 0)
        .find_map(|entry| entry.strip_prefix(prefix.as_bytes()))
        .map(|m| String::from_utf8_lossy(m).into_owned())
}

/// Every live process of a tree: its process group, the descendants of its leader, and processes re-parented
/// to us (we are a subreaper) that carry its marker, with their descendants. Escaped descendants (`setsid`,
/// double forks) are found this way whether or not their parents still live. A query only: zombies are left to
/// the reaper.
pub fn tree_members(leader: u32, marker: &str) -> Vec<u32> {
    let procs = processes();
    let me = std::process::id();
    let own = own_children();
    let mut children: HashMap<u32, Vec<u32>> = HashMap::new();
    for p in &procs {
        children.entry(p.ppid).or_default().push(p.pid);
    }
    let mut roots: Vec<u32> = procs
        .iter()
        .filter(|p| {
            p.pid == leader
                || p.pgid == leader
                || (p.ppid == me && !own.contains(&p.pid) && !p.zombie && carries_marker(p.pid, marker))
        })
        .map(|p| p.pid)
        .collect();
    drop(own);
    let mut members = HashSet::new();
    while let Some(pid) = roots.pop() {
        if pid == me || !members.insert(pid) {
            continue;
        }
        roots.extend(children.get(&pid).into_iter().flatten());
    }
    let zombies: HashSet<u32> = procs.iter().filter(|p| p.zombie).map(|p| p.pid).collect();
    members.retain(|pid| !zombies.contains(pid));
    members.into_iter().collect()
}

/// Sends `sig` to a tree's process group and to every member found outside it; returns the members found.
pub fn signal_tree(leader: u32, marker: &str, sig: i32) -> Vec<u32> {
    let _ = signal_group(leader, sig);
    let members = tree_members(leader, marker);
    for pid in &members {
        let _ = signal_process(*pid, sig);
    }
    members
}

/// Every process (other than this one) whose environment carries one of these tree markers: one pass over
/// /proc, each environment read once however many markers there are.
pub fn marked_processes(markers: &[String]) -> Vec<u32> {
    let me = std::process::id();
    let markers: HashSet<&str> = markers.iter().map(String::as_str).collect();
    processes()
        .into_iter()
        .filter(|p| p.pid != me && !p.zombie && marker_of(p.pid).is_some_and(|m| markers.contains(m.as_str())))
        .map(|p| p.pid)
        .collect()
}

/// A tree known only from history: its leader's pid and start time, and its marker.
#[derive(Clone, Debug)]
pub struct RecordedTree {
    pub leader: Option<(u32, u64)>,
    pub marker: String,
}

/// Sends `sig`, in one pass over /proc, to what is left of these trees: each leader that is still the process
/// recorded (pid, start time and marker all match, so a reused pid is never signalled) with its group and
/// descendants, and every process carrying one of the markers, with its descendants. Returns the pids
/// signalled.
pub fn signal_recorded_trees(trees: &[RecordedTree], sig: i32) -> Vec<u32> {
    let me = std::process::id();
    let markers: HashSet<&str> = trees.iter().map(|t| t.marker.as_str()).collect();
    // Each leader is held by a pidfd opened before the check, so the process checked is the process signalled
    // even if its pid is reused in between (None: a kernel without pidfds, by pid alone).
    let pidfds: HashMap<u32, Option<PidFd>> = trees
        .iter()
        .filter_map(|t| t.leader)
        .filter_map(|(pid, _)| match PidFd::open(pid) {
            Ok(fd) => Some((pid, Some(fd))),
            Err(e) if e.raw_os_error() == Some(libc::ENOSYS) => Some((pid, None)),
            Err(_) => None,
        })
        .collect();
    let procs: Vec<(ProcInfo, Option<String>)> = processes()
        .into_iter()
        .filter(|p| p.pid != me && !p.zombie)
        .map(|p| (p, marker_of(p.pid)))
        .collect();
    let leaders: HashSet<u32> = trees
        .iter()
        .filter_map(|t| {
            let (pid, start) = t.leader?;
            (pidfds.contains_key(&pid)
                && procs
                    .iter()
                    .any(|(p, m)| p.pid == pid && p.start_time == start && m.as_deref() == Some(t.marker.as_str())))
            .then_some(pid)
        })
        .collect();
    let mut children: HashMap<u32, Vec<u32>> = HashMap::new();
    for (p, _) in &procs {
        children.entry(p.ppid).or_default().push(p.pid);
    }
    let mut roots: Vec<u32> = procs
        .iter()
        .filter(|(p, m)| {
            leaders.contains(&p.pid) || leaders.contains(&p.pgid) || m.as_deref().is_some_and(|m| markers.contains(m))
        })
        .map(|(p, _)| p.pid)
        .collect();
    let mut members = HashSet::new();
    while let Some(pid) = roots.pop() {
        if pid == me || !members.insert(pid) {
            continue;
        }
        roots.extend(children.get(&pid).into_iter().flatten());
    }
    // The groups first, while each checked leader keeps its id from being reused.
    for leader in &leaders {
        let _ = signal_group(*leader, sig);
    }
    for pid in &members {
        match pidfds.get(pid) {
            Some(Some(leader)) if leaders.contains(pid) => drop(leader.signal(sig)),
            _ => drop(signal_process(*pid, sig)),
        }
    }
    members.into_iter().collect()
}

/// The processes (other than this one) holding a tree's pipes open, found through /proc/*/fd, split into those
/// provably of the tree and the others.
#[derive(Debug, Default)]
pub struct PipeHolders {
    /// Carry the tree's marker, descend from its leader, or started after it (a process that cleared its
    /// environment and left the group still started after the leader).
    pub tree: Vec<ProcInfo>,
    /// Started before the leader and unrelated to it: they were handed the pipes (an ssh ControlMaster given a
    /// session's stdio, a daemon sent descriptors over a socket) and are not ours to kill.
    pub others: Vec<ProcInfo>,
}

/// Who holds any of these pipes open, judged against the tree of `leader` (which started at `leader_start`,
/// when known) and `marker`.
pub fn pipe_holders(inodes: &[u64], leader: u32, leader_start: Option<u64>, marker: &str) -> PipeHolders {
    let me = std::process::id();
    let wanted: Vec<String> = inodes.iter().map(|i| format!("pipe:[{i}]")).collect();
    let procs = processes();
    let by_pid: HashMap<u32, &ProcInfo> = procs.iter().map(|p| (p.pid, p)).collect();
    // The leader has exited, so its pid may name another process now: an ancestor is the leader only with the
    // leader's start time.
    let descends_from_leader = |p: &ProcInfo| {
        let mut cur = p.ppid;
        for _ in 0..by_pid.len() {
            let Some(parent) = by_pid.get(&cur) else { return false };
            if parent.pid == leader && Some(parent.start_time) == leader_start {
                return true;
            }
            if parent.ppid == cur || cur <= 1 {
                return false;
            }
            cur = parent.ppid;
        }
        false
    };
    let mut holders = PipeHolders::default();
    for p in procs.iter().filter(|p| p.pid != me && !p.zombie) {
        let holds = std::fs::read_dir(format!("/proc/{}/fd", p.pid)).is_ok_and(|fds| {
            fds.flatten().any(|fd| {
                std::fs::read_link(fd.path())
                    .is_ok_and(|target| wanted.iter().any(|w| target.as_os_str() == w.as_str()))
            })
        });
        if !holds {
            continue;
        }
        // Start times count clock ticks: one in the leader's own tick is taken as after it (a descendant that
        // escaped at once), the only way a process of the tree that cleared its environment can be told apart.
        let after_leader = leader_start.is_some_and(|t| p.start_time >= t);
        if after_leader || carries_marker(p.pid, marker) || descends_from_leader(p) {
            holders.tree.push(*p);
        } else {
            holders.others.push(*p);
        }
    }
    holders
}

/// Whether `pid` exists and is not a zombie.
pub fn process_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rfind(')')
            .and_then(|i| stat[i + 2..].chars().next())
            .is_some_and(|s| s != 'Z' && s != 'X'),
        Err(_) => false,
    }
}

/// Whether no process of the tree is left. A zombie still holds its group: whoever waits for a tree to go reaps
/// the orphans re-parented to us first ([`super::reaper::reap_orphans`]).
pub fn tree_gone(leader: u32, marker: &str) -> bool {
    tree_members(leader, marker).is_empty() && !group_exists(leader)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_lines_parse_whatever_the_command_name_holds() {
        let stat = "42 (a) b) (c) S 7 42 42 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 98765 123 4";
        let p = parse_stat(42, stat).unwrap();
        assert_eq!(
            (p.pid, p.ppid, p.pgid, p.zombie, p.start_time),
            (42, 7, 42, false, 98765)
        );
        let z = parse_stat(9, "9 (sh) Z 1 9 9 0").unwrap();
        assert!(z.zombie);
        assert!(parse_stat(9, "9 (x) X 1 3 3").unwrap().zombie);
        assert!(parse_stat(1, "garbage").is_none());
        assert!(parse_stat(1, "1 (x)").is_none(), "a line cut after the name is refused");
        assert!(parse_stat(1, "1 (x) R notanumber 1").is_none());
    }

    /// A query about a tree answers and does nothing else: the zombies re-parented to us are reaped by the
    /// reaper when its owner asks (`reap_orphans`), never as a side effect of looking. Runs in a child test
    /// process, which becomes a subreaper without making this test binary one.
    #[test]
    fn tree_queries_leave_zombies_to_the_reaper() {
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "proc::scan::tests::as_subreaper_tree_queries_do_not_reap",
                "--exact",
                "--ignored",
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    #[test]
    #[ignore = "run by tree_queries_leave_zombies_to_the_reaper in its own process"]
    fn as_subreaper_tree_queries_do_not_reap() {
        assert!(crate::proc::reaper::become_subreaper());
        // A child nobody registered (as an orphan re-parented to us would be), left to become a zombie.
        let child = std::process::Command::new("/bin/true").spawn().unwrap();
        let pid = child.id();
        drop(child); // neither waits nor kills
        for _ in 0..1000 {
            if process(pid).is_some_and(|p| p.zombie) {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert!(process(pid).is_some_and(|p| p.zombie), "the child is a zombie");
        assert!(tree_members(pid, "no-such-marker").is_empty());
        assert!(tree_gone(pid, "no-such-marker") || process(pid).is_some());
        signal_tree(pid, "no-such-marker", 0);
        assert!(
            process(pid).is_some_and(|p| p.zombie),
            "the queries left the zombie for the reaper"
        );
        crate::proc::reaper::reap_orphans();
        assert!(process(pid).is_none(), "the reaper reaped it");
    }

    #[test]
    fn this_process_is_found_with_its_parent_and_group() {
        let me = std::process::id();
        let found = processes()
            .into_iter()
            .find(|p| p.pid == me)
            .expect("this process is in /proc");
        // SAFETY: getppid and getpgrp have no preconditions.
        let (ppid, pgid) = unsafe { (libc::getppid() as u32, libc::getpgrp() as u32) };
        assert_eq!((found.ppid, found.pgid, found.zombie), (ppid, pgid, false));
        assert!(found.start_time > 0, "the start time is read");
    }
}
