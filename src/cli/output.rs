//! Files written where the user says (`capture -w`, `verify --junit`,
//! `init -o`). grelab runs as root, so such a path is never followed
//! through a symbolic link, an existing file is replaced only when the
//! command says so, and then atomically, and under sudo the file belongs to
//! the user who ran sudo.
//!
//! A new file is created in place with `O_CREAT|O_EXCL` (which never follows
//! a link and never opens a file that exists), so a capture streams into it
//! and a killed run keeps what it wrote. A replacement is written to a fresh
//! temporary file beside the target and renamed over it at [`Output::commit`]:
//! the old file stays whole until then, and `rename` replaces a directory
//! entry, it never writes through one.

use std::fs::{self, File, OpenOptions};
use std::io::{self, ErrorKind, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use anyhow::{Result, anyhow};

use crate::error::bad_input;

/// What a command does with a regular file that is at its output path already.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Existing {
    /// Keep it and refuse (exit 2), pointing at `--force`.
    Keep,
    /// Replace it, atomically.
    Replace,
}

/// `--force` as what an output file does with an existing file.
pub(crate) fn existing(force: bool) -> Existing {
    if force {
        Existing::Replace
    } else {
        Existing::Keep
    }
}

/// A file being written at a user-given path. [`Output::commit`] makes it
/// final; dropped uncommitted, what it wrote is removed and a file it was to
/// replace stays as it was.
#[derive(Debug)]
pub(crate) struct Output {
    file: File,
    path: PathBuf,
    /// The temporary file that replaces `path` at commit.
    temp: Option<PathBuf>,
    committed: bool,
}

/// Mode of every output file; a stricter umask still narrows it.
const MODE: u32 = 0o644;

/// Opens `path` for writing, by the rules above.
pub(crate) fn create(path: &Path, existing: Existing) -> Result<Output> {
    let shown = path.display();
    // The entry can change between the exclusive open and the look at what
    // is there: look again, a few times.
    for _ in 0..3 {
        match open_new(path) {
            Ok(file) => return Output::new(file, path, None),
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
            Err(e) => return Err(open_error(path, e)),
        }
        let meta = match fs::symlink_metadata(path) {
            Ok(m) => m,
            Err(e) if e.kind() == ErrorKind::NotFound => continue,
            Err(e) => return Err(open_error(path, e)),
        };
        let kind = meta.file_type();
        if kind.is_symlink() {
            return Err(bad_input(format!(
                "`{shown}` is a symbolic link; grelab does not write through links: remove it or name another file"
            )));
        }
        if kind.is_dir() {
            return Err(open_error(path, ErrorKind::IsADirectory.into()));
        }
        if !kind.is_file() {
            return Err(bad_input(format!(
                "`{shown}` exists and is not a regular file; name another file"
            )));
        }
        if existing == Existing::Keep {
            return Err(bad_input(format!(
                "`{shown}` exists already; pass --force to replace it"
            )));
        }
        let (temp, file) = open_temp(path)?;
        return Output::new(file, path, Some(temp));
    }
    Err(anyhow!(
        "`{shown}` keeps appearing and disappearing while grelab creates it; try again"
    ))
}

/// Writes `bytes` to `path` by the rules of [`create`], in one go.
pub(crate) fn write(path: &Path, existing: Existing, bytes: &[u8]) -> Result<()> {
    let mut out = create(path, existing)?;
    out.write_all(bytes)
        .map_err(|e| anyhow!("writing `{}`: {e}", path.display()))?;
    out.commit()
}

impl Output {
    fn new(file: File, path: &Path, temp: Option<PathBuf>) -> Result<Output> {
        let out = Output {
            file,
            path: path.to_owned(),
            temp,
            committed: false,
        };
        // Dropped on error, `out` removes the file it made.
        if let Some((uid, gid)) = sudo_user() {
            std::os::unix::fs::fchown(&out.file, Some(uid), Some(gid)).map_err(|e| {
                anyhow!(
                    "giving `{}` to the sudo user ({uid}:{gid}): {e}",
                    path.display()
                )
            })?;
        }
        Ok(out)
    }

    /// Makes the file final: a replacement takes the target's name now.
    pub(crate) fn commit(mut self) -> Result<()> {
        if let Some(temp) = &self.temp {
            fs::rename(temp, &self.path)
                .map_err(|e| anyhow!("replacing `{}`: {e}", self.path.display()))?;
        }
        self.committed = true;
        Ok(())
    }
}

impl Write for Output {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.file.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

impl Drop for Output {
    fn drop(&mut self) {
        if self.committed {
            return;
        }
        let made = self.temp.as_deref().unwrap_or(&self.path);
        // Only the file this run made: the name may point elsewhere by now.
        if let (Ok(ours), Ok(there)) = (self.file.metadata(), fs::symlink_metadata(made))
            && (ours.dev(), ours.ino()) == (there.dev(), there.ino())
        {
            let _ = fs::remove_file(made);
        }
    }
}

/// Creates `path`, which must not exist (a link there counts as existing).
fn open_new(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(MODE)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
}

/// A fresh file beside `path`, for a replacement: the same filesystem, so
/// rename is atomic. The name is unpredictable, and `O_EXCL` refuses one
/// planted in a shared directory (like /tmp) ahead of us.
fn open_temp(path: &Path) -> Result<(PathBuf, File)> {
    static N: AtomicU32 = AtomicU32::new(0);
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let mut last = None;
    for _ in 0..16 {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let temp = dir.join(format!(
            ".grelab-{}-{}-{nanos:09}.tmp",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        match open_new(&temp) {
            Ok(file) => return Ok((temp, file)),
            Err(e) if e.kind() == ErrorKind::AlreadyExists => last = Some(e),
            Err(e) => return Err(open_error(&temp, e)),
        }
    }
    Err(anyhow!(
        "creating a temporary file in `{}` to replace `{}`: {}",
        dir.display(),
        path.display(),
        last.map_or_else(String::new, |e| e.to_string())
    ))
}

/// A failed open, as the user can act on it.
fn open_error(path: &Path, e: io::Error) -> anyhow::Error {
    let shown = path.display();
    match e.kind() {
        ErrorKind::NotFound | ErrorKind::NotADirectory => bad_input(format!(
            "cannot create `{shown}`: its directory does not exist"
        )),
        ErrorKind::IsADirectory => {
            bad_input(format!("`{shown}` is a directory; name a file in it"))
        }
        _ => anyhow!("creating `{shown}`: {e}"),
    }
}

/// The user who ran `sudo grelab ...`, to own what grelab writes for them:
/// only when running as root and both ids are numbers.
fn sudo_user() -> Option<(u32, u32)> {
    if !nix::unistd::geteuid().is_root() {
        return None;
    }
    let id = |var| std::env::var(var).ok()?.parse::<u32>().ok();
    Some((id("SUDO_UID")?, id("SUDO_GID")?))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fresh directory of this test's own, removed at the end.
    struct Dir(PathBuf);

    impl Dir {
        fn new(tag: &str) -> Dir {
            let d =
                std::env::temp_dir().join(format!("grelab-output-{tag}-{}", std::process::id()));
            let _ = fs::remove_dir_all(&d);
            fs::create_dir(&d).unwrap();
            Dir(d)
        }

        fn names(&self) -> Vec<String> {
            let mut v: Vec<String> = fs::read_dir(&self.0)
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            v.sort();
            v
        }
    }

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn a_replacement_takes_the_name_only_at_commit() {
        let d = Dir::new("commit");
        let p = d.0.join("r.xml");
        fs::write(&p, "old").unwrap();
        let mut out = create(&p, Existing::Replace).unwrap();
        out.write_all(b"new").unwrap();
        assert_eq!(fs::read_to_string(&p).unwrap(), "old");
        assert_eq!(d.names().len(), 2, "a temporary file beside it");
        out.commit().unwrap();
        assert_eq!(fs::read_to_string(&p).unwrap(), "new");
        assert_eq!(d.names(), ["r.xml"]);
    }

    #[test]
    fn an_output_dropped_uncommitted_leaves_nothing_and_keeps_the_old_file() {
        let d = Dir::new("drop");
        let old = d.0.join("old");
        fs::write(&old, "kept").unwrap();
        let mut out = create(&old, Existing::Replace).unwrap();
        out.write_all(b"half").unwrap();
        drop(out);
        let mut out = create(&d.0.join("new"), Existing::Keep).unwrap();
        out.write_all(b"half").unwrap();
        drop(out);
        assert_eq!(d.names(), ["old"]);
        assert_eq!(fs::read_to_string(&old).unwrap(), "kept");
    }

    #[test]
    fn paths_that_name_no_file_are_bad_input() {
        let d = Dir::new("bad");
        fs::create_dir(d.0.join("sub")).unwrap();
        for (p, says) in [
            (d.0.join("missing/x"), "its directory does not exist"),
            (d.0.join("sub"), "is a directory"),
            (d.0.join("sub/"), "is a directory"),
            (PathBuf::from("/dev/null"), "is not a regular file"),
        ] {
            let e = create(&p, Existing::Replace).unwrap_err();
            assert_eq!(crate::error::exit_code(&e), 2, "{}: {e:#}", p.display());
            assert!(format!("{e:#}").contains(says), "{}: {e:#}", p.display());
        }
        assert_eq!(d.names(), ["sub"]);
    }
}
