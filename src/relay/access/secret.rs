//! Secrets from the configuration: tokens and keys, read from small files, never
//! printed, logged or serialized.

use std::path::Path;

use serde::{Deserialize, Serialize, Serializer};

/// A secret from the configuration: never printed, logged or serialized.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps `s`.
    pub fn new(s: impl Into<String>) -> Secret {
        Secret(s.into())
    }

    /// The secret itself, for comparison or a key.
    pub fn expose(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str("<redacted>")
    }
}

/// Largest token or key file read, bytes: a path naming a device or a huge file by
/// mistake gets an error, not a hang.
pub const MAX_SECRET_FILE_BYTES: u64 = 64 << 10;

/// Reads a small text file (a token, a key), refusing one over
/// [`MAX_SECRET_FILE_BYTES`] or not UTF-8.
pub fn read_secret_file(path: &Path) -> std::io::Result<String> {
    use std::io::Read;
    let mut text = String::new();
    std::fs::File::open(path)?
        .take(MAX_SECRET_FILE_BYTES + 1)
        .read_to_string(&mut text)?;
    if text.len() as u64 > MAX_SECRET_FILE_BYTES {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("larger than {MAX_SECRET_FILE_BYTES} bytes"),
        ));
    }
    Ok(text)
}
