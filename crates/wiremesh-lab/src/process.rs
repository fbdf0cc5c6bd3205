//! Whether a process still runs, as /proc tells it. A zombie (exited, not yet reaped by its
//! parent) still has a /proc entry but no longer runs; waiting for it to exit would wait in vain.

/// Whether process `pid` exists and is not a zombie.
pub fn running(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| runs(&stat))
}

/// Whether a `/proc/<pid>/stat` line describes a process that still runs. The state letter
/// follows the command name, which is in parentheses and may itself contain spaces and ')'.
fn runs(stat: &str) -> bool {
    let state = stat
        .rfind(')')
        .and_then(|end| stat[end + 1..].trim_start().chars().next());
    matches!(state, Some(s) if s != 'Z' && s != 'X')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zombies_and_dead_processes_do_not_run() {
        assert!(runs("42 (sleep) S 1 42 42 0 -1"));
        assert!(runs("42 (wiremesh-peer) R 1"));
        assert!(!runs("42 (sleep) Z 1 42 42 0 -1"));
        assert!(!runs("42 (sleep) X 1"));
    }

    #[test]
    fn a_name_with_spaces_and_parentheses_is_skipped_whole() {
        assert!(!runs("42 (a) S (b) Z 1"));
        assert!(runs("42 (a) Z (b) S 1"));
    }

    #[test]
    fn a_malformed_line_does_not_run() {
        assert!(!runs(""));
        assert!(!runs("42 (sleep"));
        assert!(!runs("42 (sleep)"));
    }

    #[test]
    fn this_process_runs_and_a_pid_out_of_range_does_not() {
        assert!(running(std::process::id() as i32));
        assert!(!running(i32::MAX));
    }
}
