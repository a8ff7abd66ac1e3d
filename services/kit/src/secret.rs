//! Small secrets the platform makes itself: 32 random bytes from the operating system, their hex
//! form, and a secret file kept private to its user (the dev signing key, the dev calls secrets,
//! the throwaway PostgreSQL's password).

use std::{
    io::Write,
    os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt},
    path::Path,
};

/// 32 bytes from the operating system's CSPRNG.
pub fn random32() -> Result<[u8; 32], String> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| format!("no randomness from the OS: {e}"))?;
    Ok(bytes)
}

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
    out
}

/// 64 hex digits (either case) as 32 bytes; `None` for anything else.
pub fn parse_hex32(s: &str) -> Option<[u8; 32]> {
    if s.len() != 64 || !s.is_ascii() {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

/// Reads a 32-byte secret (hex) from `path`, creating it (0600, parent 0700) when absent.
/// Refuses a file that others can read.
pub fn load_or_create(path: &Path) -> Result<[u8; 32], String> {
    let shown = path.display();
    if let Some(dir) = path.parent() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| format!("create {}: {e}", dir.display()))?;
        // The directory may have existed already (e.g. made by another user under /tmp when
        // there is no HOME): it must be this user's alone, or its files could be swapped.
        let meta = std::fs::metadata(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let me = rustix::process::getuid().as_raw();
        if std::os::unix::fs::MetadataExt::uid(&meta) != me
            || meta.permissions().mode() & 0o077 != 0
        {
            return Err(format!(
                "{} must belong to this user (uid {me}) and be private (chmod 700)",
                dir.display()
            ));
        }
    }
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let mode = std::fs::metadata(path)
                .map_err(|e| format!("{shown}: {e}"))?
                .permissions()
                .mode();
            if mode & 0o077 != 0 {
                return Err(format!(
                    "{shown} is readable by others (mode {:o}); chmod 600 it or delete it",
                    mode & 0o777
                ));
            }
            parse_hex32(text.trim()).ok_or_else(|| format!("{shown}: not 64 hex digits"))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let seed = random32()?;
            let hex = hex(&seed);
            // create_new: two processes racing both end up reading the winner's file.
            match std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(path)
            {
                Ok(mut f) => {
                    f.write_all(hex.as_bytes())
                        .and_then(|()| f.sync_all())
                        .map_err(|e| format!("write {shown}: {e}"))?;
                    Ok(seed)
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => load_or_create(path),
                Err(e) => Err(format!("create {shown}: {e}")),
            }
        }
        Err(e) => Err(format!("read {shown}: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trips_and_rejects_what_is_not_64_digits() {
        let bytes = random32().expect("randomness");
        assert_eq!(parse_hex32(&hex(&bytes)), Some(bytes));
        assert_eq!(parse_hex32(&hex(&bytes).to_uppercase()), Some(bytes));
        assert_eq!(parse_hex32("00"), None);
        assert_eq!(parse_hex32(&"zz".repeat(32)), None);
        assert_eq!(parse_hex32(&"é".repeat(32)), None);
    }

    #[test]
    fn a_secret_file_is_created_private_and_read_back() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("state/key");
        let first = load_or_create(&path).expect("created");
        assert_eq!(load_or_create(&path).expect("read"), first);
        let mode = |p: &Path| std::fs::metadata(p).expect("meta").permissions().mode() & 0o777;
        assert_eq!(
            (mode(&path), mode(&dir.path().join("state"))),
            (0o600, 0o700)
        );
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        assert!(
            load_or_create(&path).is_err(),
            "a readable secret is refused"
        );
    }
}
