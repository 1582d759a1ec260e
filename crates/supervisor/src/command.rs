//! What to run for an instance: program, arguments, extra environment and
//! working directory. Owns finding the program on `PATH` up front, so a typo
//! is reported once at start-up instead of as a crash loop.

use std::ffi::{OsStr, OsString};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// A command that could not be prepared.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    /// The command line is empty.
    #[error("could not run the app: no command given (put it after `--`)")]
    Empty,
    /// The program is not an executable file on `PATH`.
    #[error("could not find an executable program {program:?} (searched {where_})")]
    NotFound {
        /// The program as given.
        program: OsString,
        /// Where we looked.
        where_: String,
    },
}

/// The command an instance runs.
#[derive(Debug, Clone)]
pub struct CommandSpec {
    program: PathBuf,
    args: Vec<OsString>,
    env: Vec<(OsString, OsString)>,
    cwd: Option<PathBuf>,
}

impl CommandSpec {
    /// A command from its argv (`argv[0]` is the program). The program is
    /// looked up on `PATH` now when it has no `/`.
    pub fn new<I, S>(argv: I) -> Result<CommandSpec, CommandError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut argv = argv.into_iter().map(|s| s.as_ref().to_owned());
        let program = argv.next().ok_or(CommandError::Empty)?;
        Ok(CommandSpec {
            program: resolve(&program)?,
            args: argv.collect(),
            env: Vec::new(),
            cwd: None,
        })
    }

    /// Adds an environment variable for the instances.
    pub fn env(mut self, key: impl Into<OsString>, value: impl Into<OsString>) -> CommandSpec {
        self.env.push((key.into(), value.into()));
        self
    }

    /// Runs the instances in this directory.
    pub fn current_dir(mut self, dir: impl Into<PathBuf>) -> CommandSpec {
        self.cwd = Some(dir.into());
        self
    }

    /// The resolved program path.
    pub fn program(&self) -> &Path {
        &self.program
    }

    /// The arguments after the program.
    pub fn args(&self) -> &[OsString] {
        &self.args
    }

    pub(crate) fn extra_env(&self) -> &[(OsString, OsString)] {
        &self.env
    }

    pub(crate) fn cwd(&self) -> Option<&Path> {
        self.cwd.as_deref()
    }
}

fn resolve(program: &OsStr) -> Result<PathBuf, CommandError> {
    let path = Path::new(program);
    if program.is_empty() {
        return Err(CommandError::Empty);
    }
    if program.as_encoded_bytes().contains(&b'/') {
        return if is_executable(path) {
            Ok(path.to_owned())
        } else {
            Err(CommandError::NotFound {
                program: program.to_owned(),
                where_: "that path".into(),
            })
        };
    }
    let search = std::env::var_os("PATH").unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin".into());
    std::env::split_paths(&search)
        .map(|dir| dir.join(path))
        .find(|candidate| is_executable(candidate))
        .ok_or_else(|| CommandError::NotFound {
            program: program.to_owned(),
            where_: format!("PATH={}", search.to_string_lossy()),
        })
}

fn is_executable(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_programs_on_path_and_names_missing_ones() {
        let spec = CommandSpec::new(["sh", "-c", "true"]).unwrap();
        assert!(spec.program().is_absolute());
        assert_eq!(spec.args(), ["-c", "true"]);
        let err = CommandSpec::new(["no-such-program-baton"]).unwrap_err();
        assert!(err.to_string().contains("no-such-program-baton"), "{err}");
        assert!(matches!(
            CommandSpec::new(Vec::<String>::new()),
            Err(CommandError::Empty)
        ));
        assert!(CommandSpec::new(["/nonexistent/x"]).is_err());
    }
}
