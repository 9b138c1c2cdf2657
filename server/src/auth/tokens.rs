//! The tokens file (`--tokens FILE`): one `[[token]]` table per token, each with a
//! `name`, the `sha256` of the token (64 hex digits; the token itself is never stored)
//! and a `role` (`read`, `data` or `admin`):
//!
//! ```toml
//! [[token]]
//! name = "deploy-bot"
//! sha256 = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
//! role = "admin"
//! ```
//!
//! Every rule is checked when the file is read, and each error names the file and the
//! entry at fault: an unknown key, a name empty or used twice, a digest that is not 64
//! hex digits or that two entries share, a role that does not exist, no token at all.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Deserialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// What a token may do; each role can do everything the one before it can.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    /// GetProtector, ListProtectors, Watch, GetCluster, health and reflection.
    Read,
    /// `read`, plus Acquire, Report, Session, ReportBatch and EnsureProtector.
    Data,
    /// Everything, the control plane included.
    Admin,
}

impl Role {
    /// Its name in the tokens file.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Read => "read",
            Role::Data => "data",
            Role::Admin => "admin",
        }
    }

    fn parse(text: &str) -> Option<Role> {
        [Role::Read, Role::Data, Role::Admin]
            .into_iter()
            .find(|r| r.as_str() == text)
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One token of the file.
#[derive(Clone, PartialEq, Eq)]
pub struct Token {
    /// Its name, which the audit log shows.
    pub name: Arc<str>,
    /// The SHA-256 of the token.
    pub sha256: [u8; 32],
    /// What it may do.
    pub role: Role,
}

impl fmt::Debug for Token {
    // The digest is no secret, but it is noise in a log.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Token")
            .field("name", &self.name)
            .field("role", &self.role)
            .finish_non_exhaustive()
    }
}

/// Every token of a checked file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tokens(Vec<Token>);

/// Why a tokens file was refused.
#[derive(Debug, thiserror::Error)]
pub enum TokensError {
    /// It could not be read.
    #[error("tokens file {}: cannot read it: {error}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        error: std::io::Error,
    },
    /// It is not TOML of the expected shape (the parser's message names the key, line
    /// and column: an unknown key, a missing one, a wrong type).
    #[error("tokens file {}: {error}", path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's error.
        error: Box<toml::de::Error>,
    },
    /// An entry breaks a rule.
    #[error("tokens file {}: token[{index}] {name:?}: {rule}", path.display())]
    Entry {
        /// The file.
        path: PathBuf,
        /// The entry's position, from 0.
        index: usize,
        /// Its name.
        name: String,
        /// The rule it breaks.
        rule: String,
    },
    /// The file has no `[[token]]` table: nobody could call the daemon.
    #[error("tokens file {}: no [[token]] table; add one (`circuitctl token new NAME --role admin` prints it)", path.display())]
    Empty {
        /// The file.
        path: PathBuf,
    },
}

/// The file's shape; each entry is read by hand, so that its errors can name it.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    token: Vec<toml::Table>,
}

/// The keys of a `[[token]]` table.
const KEYS: [&str; 3] = ["name", "sha256", "role"];

struct Entry {
    name: String,
    sha256: String,
    role: String,
}

impl Entry {
    /// The entry's three strings, or what is wrong with it.
    fn read(table: &toml::Table) -> Result<Entry, String> {
        if let Some(unknown) = table.keys().find(|k| !KEYS.contains(&k.as_str())) {
            return Err(format!(
                "unknown key {unknown:?} (expected name, sha256 and role)"
            ));
        }
        let text = |key: &str| match table.get(key) {
            None => Err(format!("missing {key}")),
            Some(toml::Value::String(s)) => Ok(s.clone()),
            Some(other) => Err(format!("{key} must be a string (got {})", other.type_str())),
        };
        Ok(Entry {
            name: text("name")?,
            sha256: text("sha256")?,
            role: text("role")?,
        })
    }
}

impl Tokens {
    /// Reads and checks `path`.
    pub fn load(path: &Path) -> Result<Tokens, TokensError> {
        let text = std::fs::read_to_string(path).map_err(|error| TokensError::Read {
            path: path.to_owned(),
            error,
        })?;
        Tokens::parse(path, &text)
    }

    /// Checks `text`, the contents of `path` (named in errors).
    pub fn parse(path: &Path, text: &str) -> Result<Tokens, TokensError> {
        let file: File = toml::from_str(text).map_err(|error| TokensError::Parse {
            path: path.to_owned(),
            error: Box::new(error),
        })?;
        if file.token.is_empty() {
            return Err(TokensError::Empty {
                path: path.to_owned(),
            });
        }
        let mut tokens: Vec<Token> = Vec::with_capacity(file.token.len());
        for (index, table) in file.token.iter().enumerate() {
            let named = table
                .get("name")
                .and_then(toml::Value::as_str)
                .unwrap_or_default();
            let entry = Entry::read(table).map_err(|rule| TokensError::Entry {
                path: path.to_owned(),
                index,
                name: named.to_owned(),
                rule,
            })?;
            let refuse = |rule: String| TokensError::Entry {
                path: path.to_owned(),
                index,
                name: entry.name.clone(),
                rule,
            };
            if entry.name.trim().is_empty() {
                return Err(refuse("the name is empty".into()));
            }
            let sha256 = hex32(&entry.sha256).ok_or_else(|| {
                refuse(format!(
                    "sha256 must be 64 hex digits (the SHA-256 of the token, never the token), got {} characters",
                    entry.sha256.chars().count()
                ))
            })?;
            let role = Role::parse(&entry.role).ok_or_else(|| {
                refuse(format!(
                    "unknown role {:?}: expected \"read\", \"data\" or \"admin\"",
                    entry.role
                ))
            })?;
            if let Some(first) = tokens.iter().position(|t| *t.name == *entry.name) {
                return Err(refuse(format!("the name is already used by token[{first}]")));
            }
            if let Some(first) = tokens.iter().position(|t| t.sha256 == sha256) {
                return Err(refuse(format!(
                    "the same token (sha256) as token[{first}] {:?}: give each its own token",
                    tokens[first].name
                )));
            }
            tokens.push(Token {
                name: entry.name.as_str().into(),
                sha256,
                role,
            });
        }
        Ok(Tokens(tokens))
    }

    /// How many tokens there are.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there is none (never, for a checked file).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The token whose SHA-256 is that of `presented`. Every digest is compared, each in
    /// constant time, so the time taken does not depend on how much of one matched.
    pub fn find(&self, presented: &[u8]) -> Option<&Token> {
        let digest: [u8; 32] = Sha256::digest(presented).into();
        let mut found = None;
        for token in &self.0 {
            if bool::from(token.sha256.ct_eq(&digest)) {
                found = Some(token);
            }
        }
        found
    }
}

/// The hex SHA-256 of `token`, as the tokens file holds it.
pub fn sha256_hex(token: &[u8]) -> String {
    Sha256::digest(token).iter().map(|b| format!("{b:02x}")).collect()
}

/// 64 hex digits (either case) as 32 bytes.
fn hex32(text: &str) -> Option<[u8; 32]> {
    let digits = text.as_bytes();
    if digits.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (byte, pair) in out.iter_mut().zip(digits.chunks_exact(2)) {
        let high = char::from(pair[0]).to_digit(16)?;
        let low = char::from(pair[1]).to_digit(16)?;
        *byte = u8::try_from(high * 16 + low).ok()?;
    }
    Some(out)
}
