//! An isolated copy of a platform, for drills: its own registry, shards and attachments in a new
//! directory. The source is only read: every database is copied with `VACUUM INTO` through a
//! read-only connection (a consistent snapshot even while the platform is in use), attachments
//! file by file.

use std::fs;
use std::path::Path;

use super::{Context, IoContext, Platform, PlatformError, REGISTRY, open_db_read_only};

impl Platform {
    /// Copies the platform into `dest`, which must not exist yet, and opens the copy.
    pub fn copy_to(&self, dest: &Path) -> Result<Platform, PlatformError> {
        if self.postgres_url().is_some() {
            return Err(crate::pgslice::SliceError::Config(format!(
                "{}: the shards of this platform are in PostgreSQL; a drill's isolated copy is \
                 made only of a platform on SQLite shards",
                self.dir.display()
            ))
            .into());
        }
        if dest.exists() {
            return Err(PlatformError::AlreadyBuilt {
                dir: dest.to_owned(),
            });
        }
        fs::create_dir_all(dest.join("shards")).io(dest)?;
        snapshot(&self.registry_path(), &dest.join(REGISTRY))?;
        let shards = self.dir.join("shards");
        for entry in fs::read_dir(&shards).io(&shards)? {
            let path = entry.io(&shards)?.path();
            if path.extension().is_some_and(|e| e == "db") {
                let name = path.file_name().expect("a file");
                snapshot(&path, &dest.join("shards").join(name))?;
            }
        }
        let attachments = self.dir.join("attachments");
        if attachments.is_dir() {
            for rel in crate::util::relative_files(&attachments).io(&attachments)? {
                let (from, to) = (attachments.join(&rel), dest.join("attachments").join(&rel));
                let parent = to.parent().expect("under attachments");
                fs::create_dir_all(parent).io(parent)?;
                fs::copy(&from, &to).io(&from)?;
            }
        }
        Platform::open(dest)
    }
}

/// A consistent copy of one database, read through a read-only connection.
fn snapshot(from: &Path, to: &Path) -> Result<(), PlatformError> {
    let conn = open_db_read_only(from)?;
    conn.execute("VACUUM INTO ?1", [to.to_string_lossy()])
        .db(from)?;
    Ok(())
}
