//! What a path is, decided from its metadata without opening it: a FIFO blocks `open` until a
//! writer appears and a device such as `/dev/zero` never ends, so both are refused by name
//! before any read.

use crate::{IoError, Result};
use std::path::Path;

/// What kind of non-regular object `meta` describes, in words for an error message.
fn describe(meta: &std::fs::Metadata) -> &'static str {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        let t = meta.file_type();
        if t.is_fifo() {
            return "a FIFO (named pipe)";
        }
        if t.is_char_device() {
            return "a character device";
        }
        if t.is_block_device() {
            return "a block device";
        }
        if t.is_socket() {
            return "a socket";
        }
    }
    if meta.is_dir() {
        "a folder"
    } else {
        "a special file"
    }
}

/// `Ok` when `path` is a regular file (symbolic links followed); [`IoError::NotFound`] when
/// nothing is there, [`IoError::NotRegular`] when something else is.
pub(crate) fn require_file(path: &Path, what: &'static str) -> Result<()> {
    match std::fs::metadata(path) {
        Ok(m) if m.is_file() => Ok(()),
        Ok(m) => Err(IoError::NotRegular {
            what,
            path: path.to_path_buf(),
            kind: describe(&m),
            expected: "a regular file",
        }),
        Err(_) => Err(IoError::NotFound {
            what,
            path: path.to_path_buf(),
        }),
    }
}

/// `Ok` when `path` is a folder; errors as [`require_file`].
pub(crate) fn require_dir(path: &Path, what: &'static str) -> Result<()> {
    match std::fs::metadata(path) {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(m) => Err(IoError::NotRegular {
            what,
            path: path.to_path_buf(),
            kind: if m.is_file() {
                "a regular file"
            } else {
                describe(&m)
            },
            expected: "a folder",
        }),
        Err(_) => Err(IoError::NotFound {
            what,
            path: path.to_path_buf(),
        }),
    }
}

/// `Some(kind)` when something that is neither a regular file nor a folder is at `path`.
pub(crate) fn special_kind(path: &Path) -> Option<&'static str> {
    std::fs::metadata(path)
        .ok()
        .filter(|m| !m.is_file() && !m.is_dir())
        .map(|m| describe(&m))
}
