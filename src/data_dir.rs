//! Permissions of what the server keeps on disk: the data directory is `0700`, the embedded
//! store's files (`dialtone.db`, `-wal`, `-shm`) are `0600`. Looser modes found at start are
//! tightened and logged; a new store file is created `0600` before SQLite opens it, so that SQLite
//! gives its `-wal` and `-shm` files the same mode. (Other files — `secrets.env`, the development
//! key — are created `0600` where they are written.)

use std::path::Path;

/// Create `dir` if needed and make it private to the server's user.
pub fn secure_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    tighten(dir, 0o700)
}

/// Make the SQLite store at `db` private: the file itself (created empty if missing: SQLite takes
/// an empty file as a new database) and its journal files. Its directory is left alone: it may be
/// any directory the operator named (the data directory is secured by [`secure_dir`]).
pub fn secure_sqlite(db: &Path) -> std::io::Result<()> {
    if let Some(dir) = db
        .parent()
        .filter(|d| !d.as_os_str().is_empty() && !d.exists())
    {
        secure_dir(dir)?;
    }
    if !db.exists() {
        create_private(db)?;
    }
    for suffix in ["", "-wal", "-shm"] {
        let mut name = db.as_os_str().to_owned();
        name.push(suffix);
        let path = Path::new(&name);
        if path.exists() {
            tighten(path, 0o600)?;
        }
    }
    Ok(())
}

#[cfg(unix)]
fn create_private(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map(drop)
}

#[cfg(not(unix))]
fn create_private(path: &Path) -> std::io::Result<()> {
    std::fs::File::create(path).map(drop)
}

/// Remove every permission bit beyond `mode`, logging when there were any.
#[cfg(unix)]
fn tighten(path: &Path, mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let current = std::fs::metadata(path)?.permissions().mode() & 0o777;
    if current & !mode != 0 {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(current & mode))?;
        tracing::info!(
            path = %path.display(),
            was = format!("{current:o}"),
            now = format!("{:o}", current & mode),
            "tightened file permissions"
        );
    }
    Ok(())
}

#[cfg(not(unix))]
fn tighten(_: &Path, _: u32) -> std::io::Result<()> {
    Ok(())
}

#[cfg(test)]
#[cfg(unix)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn loose_modes_are_tightened_and_new_stores_are_private() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("data");
        std::fs::create_dir(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let wal = dir.join("dialtone.db-wal");
        std::fs::write(&wal, b"").unwrap();
        std::fs::set_permissions(&wal, std::fs::Permissions::from_mode(0o644)).unwrap();

        let db = dir.join("dialtone.db");
        secure_sqlite(&db).unwrap();
        secure_dir(&dir).unwrap();
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&db), 0o600, "created private");
        assert_eq!(mode(&wal), 0o600, "tightened");

        // Nothing widens a mode that is already tighter.
        std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o400)).unwrap();
        secure_sqlite(&db).unwrap();
        assert_eq!(mode(&db), 0o400);
    }
}
