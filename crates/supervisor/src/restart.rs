//! The restart policy: whether an instance that ended without being asked to
//! stop is replaced. It only decides; the group keeps the count of slots
//! given up and the planner leaves them empty. It never touches an instance
//! the group stopped on purpose, nor a rollout's outcome.

use std::fmt;
use std::process::ExitStatus;

/// What happens to an instance that ends without being asked to stop (it
/// exited, was killed by someone else, or was stopped for not being ready in
/// time).
///
/// A replaced instance starts after the group's [`Backoff`](crate::Backoff).
/// A slot that is not refilled stays empty until a rollout completes: a
/// `reload` starts the full `instances` again, and once that generation is
/// ready the group is back to full strength. A rollout that fails leaves the
/// empty slots empty.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum Restart {
    /// Replace it whatever its exit status (code 0 included).
    #[default]
    Always,
    /// Replace it only after a failure: a non-zero exit code, a death by
    /// signal, an unknown status, or not being ready in time. An instance
    /// that exits with code 0 leaves its slot empty.
    OnFailure,
    /// Never replace it; its slot stays empty.
    Never,
}

impl Restart {
    /// Whether an instance that ended on its own is replaced; `failure` says
    /// whether its end counts as one (see [`is_failure`]).
    pub(crate) fn restarts(self, failure: bool) -> bool {
        match self {
            Restart::Always => true,
            Restart::OnFailure => failure,
            Restart::Never => false,
        }
    }

    /// The policy as the command line and the config spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            Restart::Always => "always",
            Restart::OnFailure => "on-failure",
            Restart::Never => "never",
        }
    }
}

impl fmt::Display for Restart {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Anything but exit code 0 is a failure: a non-zero code, any signal (even a
/// SIGTERM someone else sent) or a status we could not read. `not_ready`
/// marks an instance stopped because it was not ready in time, whose own exit
/// status (often code 0 after our SIGTERM) says nothing.
pub(crate) fn is_failure(status: Option<ExitStatus>, not_ready: bool) -> bool {
    not_ready || !status.is_some_and(|s| s.success())
}

#[cfg(test)]
mod tests {
    use std::os::unix::process::ExitStatusExt;

    use super::*;

    #[test]
    fn each_policy_decides_on_clean_exits_and_failures() {
        let code = |c: i32| Some(ExitStatus::from_raw(c << 8));
        let signal = |s: i32| Some(ExitStatus::from_raw(s));
        let cases = [
            (code(0), false, false),
            (code(3), false, true),
            (signal(libc::SIGKILL), false, true),
            (signal(libc::SIGTERM), false, true),
            (None, false, true),
            (code(0), true, true),
        ];
        for (status, not_ready, failure) in cases {
            assert_eq!(is_failure(status, not_ready), failure, "{status:?}");
            assert!(Restart::Always.restarts(failure));
            assert_eq!(Restart::OnFailure.restarts(failure), failure);
            assert!(!Restart::Never.restarts(failure));
        }
    }

    #[test]
    fn spelled_as_on_the_command_line() {
        assert_eq!(Restart::default(), Restart::Always);
        let spelled: Vec<String> = [Restart::Always, Restart::OnFailure, Restart::Never]
            .iter()
            .map(|r| r.to_string())
            .collect();
        assert_eq!(spelled, ["always", "on-failure", "never"]);
    }
}
