//! The in-place restart: on `SIGHUP`, start the successor with the listening sockets,
//! wait (bounded) until it is ready, then trigger the handoff.

use std::io;
use std::pin::pin;
use std::process::ExitStatus;
use std::time::Duration;

use command_fds::{CommandFdExt, FdMapping};
use nix::fcntl::OFlag;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use sd_notify::NotifyState;
use shutdown_core::{Shutdown, Trigger};
use tokio::io::AsyncReadExt;
use tokio::net::unix::pipe;
use tokio::process::{Child, Command};
use tokio::time::Instant;
use tracing::{error, info, warn};

use crate::env::{
    FIRST_FD, HANDOFF_PARENT, HANDOFF_READY_FD, LISTEN_FDNAMES, LISTEN_FDS, LISTEN_PID,
    READY_MESSAGE,
};
use crate::handoff::Handoff;
use crate::millis;

/// How long a successor that failed or was stopped gets to exit after `SIGKILL`.
const REAP_BOUND: Duration = Duration::from_secs(5);

/// What became of one restart.
#[derive(Debug)]
enum Outcome {
    /// The successor is ready and serves; this process hands over.
    Ready(Child, u32),
    /// The successor did not start, exited or was not ready in time.
    Failed(String),
    /// The shutdown began during the restart.
    Aborted(Child, u32),
}

/// Handles `SIGHUP` for the life of the process.
pub(crate) async fn listen(
    handoff: Handoff,
    shutdown: Shutdown,
    mut hangup: tokio::signal::unix::Signal,
) {
    let mut triggered = pin!(shutdown.triggered());
    let mut released = false;
    loop {
        tokio::select! {
            biased;
            () = &mut triggered, if !released => {
                handoff.release_sockets();
                released = true;
                continue;
            }
            received = hangup.recv() => if received.is_none() { return },
        }
        if !shutdown.is_ready() {
            let trigger = shutdown.trigger_reason().map(ToString::to_string);
            warn!(trigger, "SIGHUP ignored: this process is shutting down");
            continue;
        }
        if !handoff.is_ready() {
            warn!("SIGHUP ignored: this process is not ready yet");
            continue;
        }
        info!("received SIGHUP; restarting in place");
        // Tracked, so that a shutdown that begins meanwhile waits for the successor to
        // be stopped before this process exits.
        let mut restart = shutdown.spawn(restart_and_settle(handoff.clone(), shutdown.clone()));
        loop {
            tokio::select! {
                _ = &mut restart => break,
                received = hangup.recv() => if received.is_some() {
                    warn!("SIGHUP ignored: a restart is already under way");
                },
            }
        }
    }
}

/// One restart, and what follows from its outcome.
async fn restart_and_settle(handoff: Handoff, shutdown: Shutdown) {
    match restart(&handoff, &shutdown).await {
        Outcome::Ready(child, successor) => {
            notify(&[NotifyState::MainPid(successor), NotifyState::Ready]);
            if shutdown.trigger(Trigger::Handoff { successor }) {
                info!(successor, "successor ready; handing over");
                // It outlives this process; tokio reaps it should it exit first.
                drop(child);
            } else {
                warn!(
                    successor,
                    "the shutdown began as the successor got ready; stopping it"
                );
                stop(child, successor, shutdown.config().task_timeout() / 2).await;
            }
        }
        Outcome::Failed(reason) => {
            error!(reason = %reason, "in-place restart failed; this process keeps serving");
            if let Some(path) = handoff.config().pid_file() {
                if let Err(error) = crate::pid_file::write(path, std::process::id()) {
                    warn!(error = %error, "could not restore the pid file");
                }
            }
            let status = format!("in-place restart failed: {reason}");
            notify(&[NotifyState::Ready, NotifyState::Status(&status)]);
        }
        Outcome::Aborted(mut child, successor) => {
            // Not ready, so it serves nothing yet.
            warn!(
                successor,
                "the shutdown began during the restart; stopping the successor"
            );
            kill_and_reap(&mut child, successor).await;
            info!(successor, "successor stopped");
            notify(&[NotifyState::Ready]);
        }
    }
}

/// Starts the successor and waits until it is ready, exits, times out, or the shutdown
/// begins.
async fn restart(handoff: &Handoff, shutdown: &Shutdown) -> Outcome {
    let timeout = handoff.config().timeout();
    let deadline = Instant::now() + timeout;
    if let Ok(now) = NotifyState::monotonic_usec_now() {
        notify(&[NotifyState::Reloading, now]);
    }
    let program = handoff.program();
    let (mut child, mut ready) = match spawn(handoff) {
        Ok(started) => started,
        Err(error) => {
            return Outcome::Failed(format!(
                "could not start {}: {error}",
                program.path.display()
            ));
        }
    };
    let Some(pid) = child.id() else {
        return Outcome::Failed("the successor exited at once".to_owned());
    };
    info!(
        successor = pid,
        program = %program.path.display(),
        timeout_ms = millis(timeout),
        "successor started; waiting until it is ready"
    );
    let reported = tokio::select! {
        biased;
        () = shutdown.triggered() => return Outcome::Aborted(child, pid),
        reported = read_ready(&mut ready) => reported,
        status = child.wait() => return Outcome::Failed(exited(status)),
        () = tokio::time::sleep_until(deadline) => {
            kill_and_reap(&mut child, pid).await;
            return Outcome::Failed(format!(
                "the successor (pid {pid}) was not ready within {timeout:?}; killed"
            ));
        }
    };
    if reported {
        return Outcome::Ready(child, pid);
    }
    // It closed the pipe without a word: it is exiting, or it has closed what it did
    // not know. Either way it will not report ready.
    tokio::select! {
        status = child.wait() => Outcome::Failed(exited(status)),
        () = tokio::time::sleep_until(deadline) => {
            kill_and_reap(&mut child, pid).await;
            Outcome::Failed(format!(
                "the successor (pid {pid}) closed its ready pipe without reporting ready; killed"
            ))
        }
    }
}

/// Starts the program with the sockets as descriptors `3..` and the write end of a
/// pipe after them; returns the child and the read end.
fn spawn(handoff: &Handoff) -> io::Result<(Child, pipe::Receiver)> {
    let sockets = handoff.sockets_to_pass()?;
    let (read, write) = nix::unistd::pipe2(OFlag::O_CLOEXEC)?;
    let count = i32::try_from(sockets.len()).map_err(io::Error::other)?;
    let ready_fd = FIRST_FD + count;
    let mut names = Vec::with_capacity(sockets.len());
    let mut mappings: Vec<FdMapping> = Vec::with_capacity(sockets.len() + 1);
    for (child_fd, (name, parent_fd)) in (FIRST_FD..).zip(sockets) {
        names.push(name);
        mappings.push(FdMapping {
            parent_fd,
            child_fd,
        });
    }
    mappings.push(FdMapping {
        parent_fd: write,
        child_fd: ready_fd,
    });
    let program = handoff.program();
    let mut command = Command::new(&program.path);
    command
        .args(&program.args)
        .current_dir(&program.cwd)
        .env(LISTEN_FDS, count.to_string())
        .env(LISTEN_FDNAMES, names.join(":"))
        .env_remove(LISTEN_PID)
        .env(HANDOFF_PARENT, std::process::id().to_string())
        .env(HANDOFF_READY_FD, ready_fd.to_string());
    command.fd_mappings(mappings).map_err(io::Error::other)?;
    let child = command.spawn();
    // The command owns this process's copies of the descriptors: close them now, so
    // that the ready pipe reaches end-of-file when the successor goes.
    drop(command);
    Ok((child?, pipe::Receiver::from_owned_fd(read)?))
}

/// `true` once the successor has written `READY=1`; `false` at end-of-file.
async fn read_ready(pipe: &mut pipe::Receiver) -> bool {
    let mut received = Vec::new();
    let mut buffer = [0u8; 64];
    loop {
        match pipe.read(&mut buffer).await {
            Ok(0) | Err(_) => return false,
            Ok(n) => {
                received.extend_from_slice(&buffer[..n]);
                if received
                    .windows(READY_MESSAGE.len())
                    .any(|w| w == READY_MESSAGE)
                {
                    return true;
                }
                if received.len() > 4096 {
                    return false;
                }
            }
        }
    }
}

fn exited(status: io::Result<ExitStatus>) -> String {
    match status {
        Ok(status) => format!("the successor exited ({status}) before it was ready"),
        Err(error) => format!("the successor could not be waited for: {error}"),
    }
}

async fn kill_and_reap(child: &mut Child, pid: u32) {
    if let Err(error) = child.start_kill() {
        warn!(successor = pid, error = %error, "could not kill the successor");
    }
    if tokio::time::timeout(REAP_BOUND, child.wait())
        .await
        .is_err()
    {
        warn!(successor = pid, "the killed successor has not exited yet");
    }
}

/// Stops a successor that is ready but no longer wanted: `SIGTERM` (it serves, so it
/// drains), then `SIGKILL` past `bound`.
async fn stop(mut child: Child, pid: u32, bound: Duration) {
    if let Ok(raw) = i32::try_from(pid) {
        if let Err(errno) = kill(Pid::from_raw(raw), Signal::SIGTERM) {
            warn!(successor = pid, error = %errno, "could not send SIGTERM to the successor");
        }
    }
    match tokio::time::timeout(bound, child.wait()).await {
        Ok(status) => info!(successor = pid, status = ?status.ok(), "successor stopped"),
        Err(_) => {
            warn!(
                successor = pid,
                "the successor did not stop in time; killing it"
            );
            kill_and_reap(&mut child, pid).await;
        }
    }
}

/// Tells systemd, when it started this process with `NOTIFY_SOCKET`; a failure is
/// logged, never fatal.
pub(crate) fn notify(states: &[NotifyState<'_>]) {
    if let Err(error) = sd_notify::notify(states) {
        warn!(error = %error, "could not notify the service manager");
    }
}
