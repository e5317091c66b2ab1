//! The variables that pass listening sockets to a process, read the same way whether
//! systemd or the previous process set them.
//!
//! systemd's protocol (`sd_listen_fds(3)`): the sockets are descriptors `3` to
//! `3 + LISTEN_FDS - 1`, `LISTEN_FDNAMES` names them (`:`-separated), and `LISTEN_PID`
//! says which process they are for. A successor gets the same variables, except
//! `LISTEN_PID`: the old process cannot know the successor's pid before it starts, so it
//! sets `SHUTDOWN_HANDOFF_PARENT` to its own pid instead, which the successor compares
//! with its parent's. Either way, a process that inherits the variables without being
//! meant (a child of the service) sees a pid that is not its own, or a parent that is
//! not its parent, and ignores them.

use std::ffi::OsString;

use crate::error::HandoffError;

/// systemd's first passed descriptor (`SD_LISTEN_FDS_START`).
pub(crate) const FIRST_FD: i32 = 3;
/// More is certainly a mistake (systemd's own limit per socket unit is far below).
const MAX_FDS: i32 = 1024;

pub(crate) const LISTEN_FDS: &str = "LISTEN_FDS";
pub(crate) const LISTEN_PID: &str = "LISTEN_PID";
pub(crate) const LISTEN_FDNAMES: &str = "LISTEN_FDNAMES";
/// Set by the old process on its successor: the old process's pid.
pub(crate) const HANDOFF_PARENT: &str = "SHUTDOWN_HANDOFF_PARENT";
/// Set by the old process on its successor: the descriptor to write `READY=1` to.
pub(crate) const HANDOFF_READY_FD: &str = "SHUTDOWN_HANDOFF_READY_FD";
/// What a successor writes to the ready descriptor once it serves.
pub(crate) const READY_MESSAGE: &[u8] = b"READY=1\n";

/// Where the passed sockets come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SocketSource {
    /// systemd socket activation (`LISTEN_PID` is this process).
    Systemd,
    /// The previous process, during an in-place restart (`SHUTDOWN_HANDOFF_PARENT` is
    /// this process's parent).
    Parent(u32),
}

/// The passed sockets, as the variables describe them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ListenEnv {
    pub(crate) source: SocketSource,
    /// One name per descriptor, from `FIRST_FD` on.
    pub(crate) names: Vec<String>,
    /// The descriptor to report readiness on (a successor only).
    pub(crate) ready_fd: Option<i32>,
}

/// Reads the variables through `lookup`, for the process `pid` whose parent is
/// `parent`. `Ok(None)` when no socket is passed to this process.
pub(crate) fn read<F>(
    mut lookup: F,
    pid: u32,
    parent: u32,
) -> Result<Option<ListenEnv>, HandoffError>
where
    F: FnMut(&str) -> Option<OsString>,
{
    let Some(count) = lookup(LISTEN_FDS) else {
        return Ok(None);
    };
    let count = text(LISTEN_FDS, count)?;
    let count = match count.trim().parse::<i32>() {
        Ok(n) if (0..=MAX_FDS).contains(&n) => n,
        _ => {
            return Err(HandoffError::env(
                LISTEN_FDS,
                &count,
                "expected a number of descriptors, e.g. 1",
            ));
        }
    };
    let source = match lookup(LISTEN_PID) {
        Some(raw) => {
            let raw = text(LISTEN_PID, raw)?;
            let Ok(listen_pid) = raw.trim().parse::<u32>() else {
                return Err(HandoffError::env(LISTEN_PID, &raw, "expected a process id"));
            };
            if listen_pid != pid {
                tracing::debug!(
                    listen_pid,
                    pid,
                    "LISTEN_FDS is meant for another process; ignored"
                );
                return Ok(None);
            }
            SocketSource::Systemd
        }
        None => {
            let Some(raw) = lookup(HANDOFF_PARENT) else {
                tracing::debug!("LISTEN_FDS without LISTEN_PID; ignored");
                return Ok(None);
            };
            let raw = text(HANDOFF_PARENT, raw)?;
            let Ok(old) = raw.trim().parse::<u32>() else {
                return Err(HandoffError::env(
                    HANDOFF_PARENT,
                    &raw,
                    "expected a process id",
                ));
            };
            if old != parent {
                tracing::debug!(
                    old,
                    parent,
                    "LISTEN_FDS is meant for another process; ignored"
                );
                return Ok(None);
            }
            SocketSource::Parent(old)
        }
    };
    let names = match lookup(LISTEN_FDNAMES) {
        Some(raw) => {
            let raw = text(LISTEN_FDNAMES, raw)?;
            let names: Vec<String> = if count == 0 && raw.is_empty() {
                Vec::new()
            } else {
                raw.split(':').map(str::to_owned).collect()
            };
            if names.len() != count as usize {
                return Err(HandoffError::env(
                    LISTEN_FDNAMES,
                    &raw,
                    "expected one name per descriptor of LISTEN_FDS, separated by ':'",
                ));
            }
            names
        }
        None => vec!["unknown".to_owned(); count as usize],
    };
    let ready_fd = match source {
        SocketSource::Systemd => None,
        SocketSource::Parent(_) => {
            let raw = lookup(HANDOFF_READY_FD).unwrap_or_default();
            let raw = text(HANDOFF_READY_FD, raw)?;
            match raw.trim().parse::<i32>() {
                Ok(fd) if fd >= FIRST_FD + count => Some(fd),
                _ => {
                    return Err(HandoffError::env(
                        HANDOFF_READY_FD,
                        &raw,
                        "expected the descriptor after the passed sockets",
                    ));
                }
            }
        }
    };
    Ok(Some(ListenEnv {
        source,
        names,
        ready_fd,
    }))
}

fn text(variable: &'static str, raw: OsString) -> Result<String, HandoffError> {
    raw.into_string()
        .map_err(|raw| HandoffError::env(variable, &raw.to_string_lossy(), "not valid UTF-8"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lookup(vars: &[(&str, &str)]) -> impl FnMut(&str) -> Option<OsString> {
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |name| {
            vars.iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| OsString::from(v))
        }
    }

    #[test]
    fn nothing_is_passed_without_listen_fds() {
        assert_eq!(read(lookup(&[]), 10, 1).expect("ok"), None);
        assert_eq!(
            read(lookup(&[("LISTEN_PID", "10")]), 10, 1).expect("ok"),
            None
        );
    }

    #[test]
    fn systemd_sockets_are_for_the_process_listen_pid_names() {
        let env = read(
            lookup(&[
                ("LISTEN_FDS", "2"),
                ("LISTEN_PID", "10"),
                ("LISTEN_FDNAMES", "http:admin"),
            ]),
            10,
            1,
        )
        .expect("ok")
        .expect("passed");
        assert_eq!(env.source, SocketSource::Systemd);
        assert_eq!(env.names, ["http", "admin"]);
        assert_eq!(env.ready_fd, None);

        let unnamed = read(lookup(&[("LISTEN_FDS", "1"), ("LISTEN_PID", "10")]), 10, 1)
            .expect("ok")
            .expect("passed");
        assert_eq!(
            unnamed.names,
            ["unknown"],
            "systemd's name for an unnamed socket"
        );

        assert_eq!(
            read(lookup(&[("LISTEN_FDS", "1"), ("LISTEN_PID", "11")]), 10, 1).expect("ok"),
            None,
            "another process's sockets are ignored"
        );
    }

    #[test]
    fn a_successor_takes_the_sockets_of_its_parent_only() {
        let vars = [
            ("LISTEN_FDS", "1"),
            ("LISTEN_FDNAMES", "http"),
            ("SHUTDOWN_HANDOFF_PARENT", "7"),
            ("SHUTDOWN_HANDOFF_READY_FD", "4"),
        ];
        let env = read(lookup(&vars), 10, 7).expect("ok").expect("passed");
        assert_eq!(env.source, SocketSource::Parent(7));
        assert_eq!(env.ready_fd, Some(4));
        assert_eq!(
            read(lookup(&vars), 12, 10).expect("ok"),
            None,
            "a child of the successor inherits the variables but not the sockets"
        );
        assert_eq!(
            read(lookup(&[("LISTEN_FDS", "1")]), 10, 7).expect("ok"),
            None,
            "neither LISTEN_PID nor a parent: not for us"
        );
    }

    #[test]
    fn malformed_variables_are_errors_naming_them() {
        let cases: [(&[(&str, &str)], &str); 6] = [
            (
                &[("LISTEN_FDS", "abc"), ("LISTEN_PID", "10")],
                r#"LISTEN_FDS="abc""#,
            ),
            (
                &[("LISTEN_FDS", "-1"), ("LISTEN_PID", "10")],
                r#"LISTEN_FDS="-1""#,
            ),
            (
                &[("LISTEN_FDS", "1"), ("LISTEN_PID", "me")],
                r#"LISTEN_PID="me""#,
            ),
            (
                &[
                    ("LISTEN_FDS", "2"),
                    ("LISTEN_PID", "10"),
                    ("LISTEN_FDNAMES", "http"),
                ],
                r#"LISTEN_FDNAMES="http""#,
            ),
            (
                &[("LISTEN_FDS", "1"), ("SHUTDOWN_HANDOFF_PARENT", "1")],
                r#"SHUTDOWN_HANDOFF_READY_FD="""#,
            ),
            (
                &[
                    ("LISTEN_FDS", "1"),
                    ("SHUTDOWN_HANDOFF_PARENT", "1"),
                    ("SHUTDOWN_HANDOFF_READY_FD", "3"),
                ],
                r#"SHUTDOWN_HANDOFF_READY_FD="3""#,
            ),
        ];
        for (vars, expected) in cases {
            let err = read(lookup(vars), 10, 1).expect_err(expected);
            assert!(err.to_string().starts_with(expected), "{err}");
        }
    }
}
