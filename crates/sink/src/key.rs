//! Passwords, Argon2id parameters and key files (the master key wrapped by a password).

use std::time::{Duration, Instant};

use aes_gcm::Aes256Gcm;
use aes_gcm::aead::KeyInit;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use taosbackup_core::{from_hex, to_hex};

use crate::crypto::{MasterKey, open_aes, seal_aes};
use crate::error::{Error, Result};

/// The environment variable a password is read from.
pub const PASSWORD_ENV: &str = "TAOSBACKUP_PASSWORD";
/// Key file format version.
pub(crate) const KEY_VERSION: u32 = 1;

/// A repository password. Read it from a file or from [`PASSWORD_ENV`]; the CLI never
/// accepts one as an argument. `Debug` does not print it.
#[derive(Clone)]
pub struct Password(String);

impl Password {
    /// A password from a string the caller obtained safely (a prompt, a secret store).
    pub fn new(password: impl Into<String>) -> Result<Self> {
        let p = password.into();
        if p.is_empty() {
            return Err(Error::PasswordSource {
                source_name: "the caller".into(),
                reason: "the password is empty".into(),
            });
        }
        Ok(Password(p))
    }

    /// The password in environment variable `TAOSBACKUP_PASSWORD`.
    pub fn from_env() -> Result<Self> {
        let value = std::env::var(PASSWORD_ENV).map_err(|e| Error::PasswordSource {
            source_name: PASSWORD_ENV.into(),
            reason: e.to_string(),
        })?;
        Password::new(value).map_err(|_| Error::PasswordSource {
            source_name: PASSWORD_ENV.into(),
            reason: "the password is empty".into(),
        })
    }

    /// The first line of file `path` (a trailing `\n` or `\r\n` is removed).
    pub fn from_file(path: &std::path::Path) -> Result<Self> {
        let name = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| Error::PasswordSource {
            source_name: name.clone(),
            reason: e.to_string(),
        })?;
        let line = text.lines().next().unwrap_or("");
        Password::new(line).map_err(|_| Error::PasswordSource {
            source_name: name,
            reason: "the password is empty".into(),
        })
    }

    fn as_bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Password(<redacted>)")
    }
}

/// Argon2id cost parameters, stored in each key file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KdfParams {
    /// Memory in KiB (at least 8 × parallelism).
    pub memory_kib: u32,
    /// Number of passes (at least 1).
    pub iterations: u32,
    /// Lanes (at least 1).
    pub parallelism: u32,
}

impl Default for KdfParams {
    /// 64 MiB, 3 passes, 1 lane (before calibration).
    fn default() -> Self {
        KdfParams {
            memory_kib: 64 * 1024,
            iterations: 3,
            parallelism: 1,
        }
    }
}

impl KdfParams {
    /// The cheapest valid parameters. For tests only: they give no protection.
    pub fn insecure_for_tests() -> Self {
        KdfParams {
            memory_kib: 8,
            iterations: 1,
            parallelism: 1,
        }
    }

    /// Parameters whose derivation takes about `target` on this machine: 64 MiB memory,
    /// passes raised (or memory lowered) until one derivation is near `target`.
    pub fn calibrate(target: Duration) -> Result<Self> {
        let mut p = KdfParams {
            memory_kib: 64 * 1024,
            iterations: 1,
            parallelism: 1,
        };
        let salt = [0u8; 16];
        let pw = Password("calibration".into());
        let start = Instant::now();
        derive(&pw, &salt, &p)?;
        let one = start.elapsed().max(Duration::from_micros(1));
        let passes = (target.as_secs_f64() / one.as_secs_f64()).floor();
        if passes >= 1.0 {
            p.iterations = (passes as u32).clamp(1, 100);
        } else {
            let scaled = (p.memory_kib as f64 * target.as_secs_f64() / one.as_secs_f64()) as u32;
            p.memory_kib = scaled.max(8 * 1024);
        }
        Ok(p)
    }

    fn argon2(&self) -> Result<argon2::Argon2<'static>> {
        let params =
            argon2::Params::new(self.memory_kib, self.iterations, self.parallelism, Some(32))
                .map_err(|e| Error::InvalidKdfParams {
                    reason: e.to_string(),
                })?;
        Ok(argon2::Argon2::new(
            argon2::Algorithm::Argon2id,
            argon2::Version::V0x13,
            params,
        ))
    }
}

/// Argon2id limits accepted from a key file, so a hostile key file cannot make us
/// allocate or compute without bound: 4 GiB memory, 1000 passes, 64 lanes.
fn check_limits(p: &KdfParams) -> Result<()> {
    if p.memory_kib > 4 * 1024 * 1024 || p.iterations > 1000 || p.parallelism > 64 {
        return Err(Error::InvalidKdfParams {
            reason: format!("parameters {p:?} exceed the accepted limits"),
        });
    }
    Ok(())
}

fn derive(password: &Password, salt: &[u8], params: &KdfParams) -> Result<[u8; 32]> {
    check_limits(params)?;
    let mut out = [0u8; 32];
    params
        .argon2()?
        .hash_password_into(password.as_bytes(), salt, &mut out)
        .map_err(|e| Error::InvalidKdfParams {
            reason: e.to_string(),
        })?;
    Ok(out)
}

/// The JSON of a key file, `keys/<id>`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct KeyFile {
    pub(crate) version: u32,
    pub(crate) created: DateTime<Utc>,
    pub(crate) hostname: String,
    pub(crate) kdf: KdfSection,
    /// hex(NONCE || CIPHERTEXT || TAG) of the 64-byte master key.
    pub(crate) data: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct KdfSection {
    pub(crate) algorithm: String,
    #[serde(flatten)]
    pub(crate) params: KdfParams,
    pub(crate) salt: String,
}

fn wrap_aad(repo_id: &str) -> Vec<u8> {
    let mut aad = b"taosbackup key v1 ".to_vec();
    aad.extend_from_slice(repo_id.as_bytes());
    aad
}

impl KeyFile {
    /// Wraps `master` with a key derived from `password`.
    pub(crate) fn create(
        master: &MasterKey,
        password: &Password,
        params: &KdfParams,
        repo_id: &str,
    ) -> Result<Self> {
        let salt: [u8; 32] = rand::random();
        let kek = derive(password, &salt, params)?;
        let cipher = Aes256Gcm::new(&kek.into());
        let sealed = seal_aes(&cipher, &wrap_aad(repo_id), &master.to_bytes());
        Ok(KeyFile {
            version: KEY_VERSION,
            created: Utc::now(),
            hostname: crate::lock::hostname(),
            kdf: KdfSection {
                algorithm: "argon2id".into(),
                params: *params,
                salt: to_hex(&salt),
            },
            data: to_hex(&sealed),
        })
    }

    /// Unwraps the master key; `Ok(None)` when the password does not fit this key file.
    pub(crate) fn unwrap(
        &self,
        path: &str,
        password: &Password,
        repo_id: &str,
    ) -> Result<Option<MasterKey>> {
        if self.version != KEY_VERSION {
            return Err(Error::UnsupportedVersion {
                path: path.into(),
                found: self.version,
                supported: KEY_VERSION,
            });
        }
        if self.kdf.algorithm != "argon2id" {
            return Err(Error::corrupt(
                path,
                format!("unknown KDF {:?}", self.kdf.algorithm),
            ));
        }
        let salt =
            from_hex(&self.kdf.salt).ok_or_else(|| Error::corrupt(path, "salt is not hex"))?;
        let sealed = from_hex(&self.data).ok_or_else(|| Error::corrupt(path, "data is not hex"))?;
        let kek = derive(password, &salt, &self.kdf.params)?;
        let cipher = Aes256Gcm::new(&kek.into());
        match open_aes(&cipher, path, &wrap_aad(repo_id), &sealed) {
            Ok(bytes) => MasterKey::from_bytes(&bytes)
                .map(Some)
                .ok_or_else(|| Error::corrupt(path, "master key has the wrong length")),
            Err(_) => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_file_wraps_and_rejects_wrong_password_and_other_repo() {
        let master = MasterKey::random();
        let pw = Password::new("secret").unwrap();
        let params = KdfParams::insecure_for_tests();
        let kf = KeyFile::create(&master, &pw, &params, "repo1").unwrap();
        let back = kf.unwrap("k", &pw, "repo1").unwrap().unwrap();
        assert_eq!(back.to_bytes(), master.to_bytes());
        assert!(
            kf.unwrap("k", &Password::new("nope").unwrap(), "repo1")
                .unwrap()
                .is_none()
        );
        assert!(kf.unwrap("k", &pw, "repo2").unwrap().is_none());
        let mut hostile = kf.clone();
        hostile.kdf.params.memory_kib = u32::MAX;
        assert!(hostile.unwrap("k", &pw, "repo1").is_err());
        assert!(Password::new("").is_err());
        assert_eq!(format!("{pw:?}"), "Password(<redacted>)");
    }

    #[test]
    fn password_file_first_line_and_calibration() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pw");
        std::fs::write(&path, "hunter2\r\nignored\n").unwrap();
        let pw = Password::from_file(&path).unwrap();
        assert_eq!(pw.as_bytes(), b"hunter2");
        std::fs::write(&path, "\n").unwrap();
        assert!(matches!(
            Password::from_file(&path),
            Err(Error::PasswordSource { .. })
        ));
        assert!(Password::from_file(&dir.path().join("missing")).is_err());
        let p = KdfParams::calibrate(Duration::from_millis(30)).unwrap();
        assert!(p.iterations >= 1 && p.memory_kib >= 8 * 1024, "{p:?}");
        derive(&pw, &[0u8; 16], &p).unwrap();
    }
}
