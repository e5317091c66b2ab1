//! Writing the pid file atomically: a reader sees the old pid or the new one, never a
//! partial file.

use std::fs;
use std::io::{self, Write};
use std::path::Path;

use crate::error::HandoffError;

/// Writes `pid` and a newline to `path`: to a temporary file beside it, then renamed
/// over it.
pub(crate) fn write(path: &Path, pid: u32) -> Result<(), HandoffError> {
    write_io(path, pid).map_err(|source| HandoffError::PidFile {
        path: path.to_owned(),
        source,
    })
}

fn write_io(path: &Path, pid: u32) -> io::Result<()> {
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "not a file name"))?;
    let mut temporary = name.to_owned();
    temporary.push(format!(".{pid}.tmp"));
    let temporary = path.with_file_name(temporary);
    let written = (|| {
        let mut file = fs::File::create(&temporary)?;
        writeln!(file, "{pid}")?;
        file.sync_all()?;
        fs::rename(&temporary, path)
    })();
    if written.is_err() {
        let _ = fs::remove_file(&temporary);
    }
    written
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pid_replaces_the_file_and_no_temporary_file_is_left() {
        let dir = std::env::temp_dir().join(format!("handoff-pid-{}", std::process::id()));
        fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("service.pid");
        write(&path, 41).expect("first");
        write(&path, 42).expect("second");
        assert_eq!(fs::read_to_string(&path).expect("read"), "42\n");
        let entries: Vec<_> = fs::read_dir(&dir).expect("list").collect();
        assert_eq!(entries.len(), 1, "only the pid file");
        fs::remove_dir_all(&dir).expect("clean up");
    }

    #[test]
    fn an_unwritable_path_is_an_error_naming_the_file() {
        let path = std::env::temp_dir().join("handoff-no-such-dir/x/service.pid");
        let err = write(&path, 1).expect_err("missing directory");
        let message = err.to_string();
        assert!(message.starts_with("PID_FILE="), "{message}");
        assert!(message.contains("service.pid"), "{message}");
    }
}
