//! Spill files: acknowledged events that the last flush of `ACK_MODE=buffered` could
//! not write to the database, kept on disk beside it until the next start replays them.
//!
//! A spill file is JSON lines, one [`Record`] per line, named after the database:
//! `telemetry.db.spill`, or `telemetry.db.2.spill`, `telemetry.db.3.spill`, ... when
//! that name is taken (by a spill not yet replayed, or by another process on the same
//! database). It is written whole to a temporary file, fsynced, and only then linked
//! under its name (which never replaces an existing file), and the directory is
//! fsynced: a spill file that exists is complete and on disk, and a reader never sees
//! one half written.

use std::fs::{self, File};
use std::io::{self, BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

use crate::event::Record;

/// The suffix of spill files.
const SUFFIX: &str = ".spill";
/// Names tried before giving up: `.spill`, `.2.spill` ... `.<MAX_FILES>.spill`.
const MAX_FILES: usize = 10_000;

/// The directory of `database` and its file name.
fn locate(database: &Path) -> io::Result<(PathBuf, String)> {
    let name = database
        .file_name()
        .and_then(|name| name.to_str())
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{}: no UTF-8 file name", database.display()),
            )
        })?
        .to_owned();
    let dir = match database.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_owned(),
        _ => PathBuf::from("."),
    };
    Ok((dir, name))
}

/// The spill files of `database`, oldest name first (`.spill`, then `.2.spill`, ...).
pub(crate) fn files(database: &Path) -> io::Result<Vec<PathBuf>> {
    let (dir, name) = locate(database)?;
    let mut found = Vec::new();
    for entry in fs::read_dir(&dir)? {
        let entry = entry?;
        let Some(file) = entry.file_name().to_str().map(str::to_owned) else {
            continue;
        };
        let Some(middle) = file
            .strip_prefix(name.as_str())
            .and_then(|rest| rest.strip_suffix(SUFFIX))
        else {
            continue;
        };
        let rank = match middle.strip_prefix('.') {
            None if middle.is_empty() => 1,
            Some(n) if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) => {
                n.parse().unwrap_or(usize::MAX)
            }
            _ => continue,
        };
        found.push((rank, entry.path()));
    }
    found.sort();
    Ok(found.into_iter().map(|(_, path)| path).collect())
}

/// Writes `records` to a new spill file beside `database` and returns its path. When
/// this returns `Ok`, the file is complete and on disk.
///
/// # Errors
///
/// The I/O error, with the file it concerns.
pub(crate) fn write(database: &Path, records: &[Record]) -> io::Result<PathBuf> {
    let (dir, name) = locate(database)?;
    let temporary = dir.join(format!("{name}.spill-{}.tmp", std::process::id()));
    let at = |path: &Path| {
        let path = path.display().to_string();
        move |error: io::Error| io::Error::new(error.kind(), format!("{path}: {error}"))
    };
    let written = (|| {
        let mut file = File::create(&temporary)?;
        let mut out = BufWriter::new(&mut file);
        for record in records {
            serde_json::to_writer(&mut out, record)?;
            out.write_all(b"\n")?;
        }
        out.flush()?;
        drop(out);
        file.sync_all()
    })()
    .map_err(at(&temporary));
    if let Err(error) = written {
        let _ = fs::remove_file(&temporary);
        return Err(error);
    }
    let linked = link_under_a_free_name(&temporary, &dir, &name);
    let _ = fs::remove_file(&temporary);
    let path = linked?;
    sync_dir(&dir).map_err(at(&dir))?;
    Ok(path)
}

/// Links `temporary` as the first free spill name; never replaces a file.
fn link_under_a_free_name(temporary: &Path, dir: &Path, name: &str) -> io::Result<PathBuf> {
    for n in 1..=MAX_FILES {
        let path = if n == 1 {
            dir.join(format!("{name}{SUFFIX}"))
        } else {
            dir.join(format!("{name}.{n}{SUFFIX}"))
        };
        match fs::hard_link(temporary, &path) {
            Ok(()) => return Ok(path),
            Err(error) if error.kind() == io::ErrorKind::AlreadyExists => {}
            // A file system without hard links: a rename, which is atomic too, but
            // could replace a file created at this very moment by another process.
            Err(_) if !path.exists() => {
                return fs::rename(temporary, &path)
                    .map(|()| path.clone())
                    .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())));
            }
            Err(_) => {}
        }
    }
    Err(io::Error::new(
        io::ErrorKind::AlreadyExists,
        format!(
            "{}: {MAX_FILES} spill files already exist beside the database",
            dir.display()
        ),
    ))
}

/// Reads the records of a spill file.
///
/// # Errors
///
/// A message naming the line when a line is not a record, or the I/O error.
pub(crate) fn read(path: &Path) -> Result<Vec<Record>, String> {
    let file = File::open(path).map_err(|e| e.to_string())?;
    let mut records = Vec::new();
    for (index, line) in BufReader::new(file).lines().enumerate() {
        let line = line.map_err(|e| e.to_string())?;
        if line.trim().is_empty() {
            continue;
        }
        let record = serde_json::from_str(&line)
            .map_err(|e| format!("line {}: not a spilled event: {e}", index + 1))?;
        records.push(record);
    }
    Ok(records)
}

/// Removes a replayed spill file, durably.
pub(crate) fn remove(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Ok(()) => {}
        // Replayed and removed by another process starting on the same database.
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(error) => return Err(error),
    }
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => sync_dir(dir),
        _ => sync_dir(Path::new(".")),
    }
}

/// Makes the directory's entries (a file created, linked or removed) durable.
fn sync_dir(dir: &Path) -> io::Result<()> {
    #[cfg(unix)]
    {
        File::open(dir)?.sync_all()
    }
    #[cfg(not(unix))]
    {
        // Windows cannot open a directory as a file; NTFS journals its metadata.
        let _ = dir;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::tests::{TempDb, record};

    #[test]
    fn records_round_trip_and_a_second_spill_takes_the_next_name() {
        let db = TempDb::new("spill-names");
        let first = [record("a", 1.0), record("b", 0.1 + 0.2)];
        let path = write(&db.0, &first).expect("spill");
        assert_eq!(path, PathBuf::from(format!("{}.spill", db.0.display())));
        assert_eq!(read(&path).expect("read"), first, "values are exact");

        let second = write(&db.0, &[record("c", 3.0)]).expect("second spill");
        assert_eq!(second, PathBuf::from(format!("{}.2.spill", db.0.display())));
        assert_eq!(read(&path).expect("read"), first, "the first is kept");
        assert_eq!(files(&db.0).expect("list"), [path.clone(), second.clone()]);

        remove(&path).expect("remove");
        remove(&path).expect("removing twice is not an error");
        assert_eq!(files(&db.0).expect("list"), [second]);
    }

    #[test]
    fn only_complete_spill_files_of_this_database_are_listed() {
        let db = TempDb::new("spill-list");
        let name = db.0.display().to_string();
        for other in [
            format!("{name}.spill-1.tmp"),
            format!("{name}.x.spill"),
            format!("{name}-wal"),
            format!("{name}2.spill"),
        ] {
            fs::write(&other, "").expect("write");
        }
        let listed = files(&db.0).expect("list");
        for other in [
            format!("{name}.spill-1.tmp"),
            format!("{name}.x.spill"),
            format!("{name}2.spill"),
        ] {
            let _ = fs::remove_file(other);
        }
        assert_eq!(listed, Vec::<PathBuf>::new());
    }

    #[test]
    fn a_line_that_is_not_a_record_is_an_error_naming_the_line() {
        let db = TempDb::new("spill-bad");
        let path = write(&db.0, &[record("a", 1.0)]).expect("spill");
        let mut text = fs::read_to_string(&path).expect("read");
        text.push_str("{\"id\":\"b\"}\n");
        fs::write(&path, text).expect("write");
        let err = read(&path).expect_err("malformed");
        assert!(err.starts_with("line 2: not a spilled event"), "{err}");
    }

    #[test]
    fn a_spill_into_a_missing_directory_is_an_error_naming_the_file() {
        let db = Path::new("/nonexistent-telemetry-dir/t.db");
        let err = write(db, &[record("a", 1.0)]).expect_err("no directory");
        assert!(
            err.to_string()
                .contains("/nonexistent-telemetry-dir/t.db.spill-"),
            "{err}"
        );
    }
}
