//! `cargo xtask systemd-units`: `docs/deploy`'s systemd units checked by
//! `systemd-analyze verify`, which reads them as systemd would.
//!
//! `systemd-analyze verify` exits 0 on most mistakes in a unit (an unknown key, a value
//! it cannot parse: systemd ignores them and says so), so any line it prints fails the
//! check. It also checks that `ExecStart=`'s program exists: the units are copied to a
//! temporary folder, under their own names (the socket activates the service of its
//! name), with the demo's binary replaced by `/bin/true`.

use std::fs;
use std::process::{Command, ExitCode};

/// The units, in `docs/deploy`.
const UNITS: [&str; 2] = ["telemetry-axum.service", "telemetry-axum.socket"];
/// Where the units expect the demo's binary.
const INSTALLED_BINARY: &str = "/usr/local/bin/telemetry-axum";
/// A program that exists wherever systemd does.
const STAND_IN: &str = "/bin/true";

pub fn run() -> ExitCode {
    match verify() {
        Ok(()) => {
            println!(
                "{}: systemd-analyze verify found nothing to say",
                UNITS.join(", ")
            );
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("systemd units: {error}");
            ExitCode::from(1)
        }
    }
}

fn verify() -> Result<(), String> {
    let dir = std::env::temp_dir().join(format!("xtask-systemd-{}", std::process::id()));
    fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let checked = (|| {
        let mut paths = Vec::new();
        for unit in UNITS {
            let source = format!("docs/deploy/{unit}");
            let text = fs::read_to_string(&source).map_err(|e| format!("{source}: {e}"))?;
            let path = dir.join(unit);
            fs::write(&path, text.replace(INSTALLED_BINARY, STAND_IN))
                .map_err(|e| format!("{}: {e}", path.display()))?;
            paths.push(path);
        }
        let output = Command::new("systemd-analyze")
            .arg("verify")
            .args(&paths)
            .output()
            .map_err(|e| format!("systemd-analyze: {e}"))?;
        let said = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        if output.status.success() && said.trim().is_empty() {
            Ok(())
        } else {
            Err(format!(
                "systemd-analyze verify ({}):\n{}",
                output.status,
                said.trim()
            ))
        }
    })();
    let _ = fs::remove_dir_all(&dir);
    checked
}
