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
//! With mTLS (`--tls-client-ca`), a client certificate's subject may hold a role too,
//! one `[[certificate]]` table each, with an optional `name` (the subject, if absent);
//! see `crate::subject` for how a subject matches:
//!
//! ```toml
//! [[certificate]]
//! subject = "CN=billing,O=acme"
//! role = "data"
//! name = "billing"
//! ```
//!
//! Either table may set its own per-identity limits, `max_watchers`, `max_sessions`
//! and `max_protectors` (0 forbids), in place of the daemon's `--max-*-per-identity`.
//!
//! Every rule is checked when the file is read, and each error names the file and the
//! entry at fault: an unknown key, a name empty or used twice (names are shared by both
//! tables: each names one identity), a digest that is not 64 hex digits or that two
//! entries share, a subject that does not parse or that two entries share, a role that
//! does not exist, a negative limit, no table at all, and (`require_mtls`) certificate
//! roles without mTLS.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Deserialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::subject::Subject;

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

/// Per-identity limits a `[[token]]` or `[[certificate]]` table may set for itself
/// (`max_watchers`, `max_sessions`, `max_protectors`); unset, the daemon's
/// `--max-*-per-identity` apply. Zero forbids.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Overrides {
    /// Open Watch streams.
    pub max_watchers: Option<usize>,
    /// Open Session streams.
    pub max_sessions: Option<usize>,
    /// Protectors it created that exist.
    pub max_protectors: Option<usize>,
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
    /// Its own limits, if any.
    pub limits: Overrides,
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

/// One `[[certificate]]` table: a client certificate subject (mTLS) and its role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Certificate {
    /// Its `name`, or else the subject as written; the audit log shows it.
    pub name: Arc<str>,
    /// The subject a client certificate must have (see `crate::subject`).
    pub subject: Subject,
    /// What it may do.
    pub role: Role,
    /// Its own limits, if any.
    pub limits: Overrides,
}

/// Every token and certificate role of a checked file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tokens {
    tokens: Vec<Token>,
    certificates: Vec<Certificate>,
}

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
    #[error("tokens file {}: {table}[{index}] {name:?}: {rule}", path.display())]
    Entry {
        /// The file.
        path: PathBuf,
        /// `token` or `certificate`.
        table: &'static str,
        /// The entry's position in its table, from 0.
        index: usize,
        /// Its name (a certificate's subject when it has none).
        name: String,
        /// The rule it breaks.
        rule: String,
    },
    /// The file has no table at all: nobody could call the daemon.
    #[error("tokens file {}: no [[token]] or [[certificate]] table; add one (`circuitctl token new NAME --role admin` prints it)", path.display())]
    Empty {
        /// The file.
        path: PathBuf,
    },
    /// `[[certificate]]` tables, but no client certificate is ever asked for.
    #[error("tokens file {}: certificate[0] {name:?}: certificate roles need mTLS: set --tls-client-ca, or remove the [[certificate]] tables", path.display())]
    NoClientCa {
        /// The file.
        path: PathBuf,
        /// The first certificate entry's name.
        name: String,
    },
}

/// The file's shape; each entry is read by hand, so that its errors can name it.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    token: Vec<toml::Table>,
    #[serde(default)]
    certificate: Vec<toml::Table>,
}

/// The keys of a `[[token]]` and of a `[[certificate]]` table.
const TOKEN_KEYS: &[&str] = &[
    "name",
    "sha256",
    "role",
    "max_watchers",
    "max_sessions",
    "max_protectors",
];
const CERTIFICATE_KEYS: &[&str] = &[
    "name",
    "subject",
    "role",
    "max_watchers",
    "max_sessions",
    "max_protectors",
];

/// One table, read by its keys; errors are the rule broken, for `Tokens::parse` to
/// name the entry.
struct Entry<'a> {
    table: &'a toml::Table,
}

impl<'a> Entry<'a> {
    fn new(table: &'a toml::Table, keys: &[&str]) -> Result<Entry<'a>, String> {
        if let Some(unknown) = table.keys().find(|k| !keys.contains(&k.as_str())) {
            return Err(format!("unknown key {unknown:?} (expected {})", keys.join(", ")));
        }
        Ok(Entry { table })
    }

    fn text(&self, key: &str) -> Result<Option<&'a str>, String> {
        match self.table.get(key) {
            None => Ok(None),
            Some(toml::Value::String(s)) => Ok(Some(s)),
            Some(other) => Err(format!("{key} must be a string (got {})", other.type_str())),
        }
    }

    fn required(&self, key: &str) -> Result<&'a str, String> {
        self.text(key)?.ok_or_else(|| format!("missing {key}"))
    }

    fn role(&self) -> Result<Role, String> {
        let role = self.required("role")?;
        Role::parse(role)
            .ok_or_else(|| format!("unknown role {role:?}: expected \"read\", \"data\" or \"admin\""))
    }

    fn limits(&self) -> Result<Overrides, String> {
        let limit = |key: &str| match self.table.get(key) {
            None => Ok(None),
            Some(toml::Value::Integer(n)) => usize::try_from(*n)
                .map(Some)
                .map_err(|_| format!("{key} must be 0 or more (got {n})")),
            Some(other) => Err(format!("{key} must be an integer (got {})", other.type_str())),
        };
        Ok(Overrides {
            max_watchers: limit("max_watchers")?,
            max_sessions: limit("max_sessions")?,
            max_protectors: limit("max_protectors")?,
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
        if file.token.is_empty() && file.certificate.is_empty() {
            return Err(TokensError::Empty {
                path: path.to_owned(),
            });
        }
        let refuse = |table: &'static str, index: usize, name: &str| {
            let name = name.to_owned();
            move |rule: String| TokensError::Entry {
                path: path.to_owned(),
                table,
                index,
                name: name.clone(),
                rule,
            }
        };
        let mut names: Vec<(Arc<str>, String)> = Vec::new();
        let mut unique = |name: &str, here: String| -> Result<Arc<str>, String> {
            if name.trim().is_empty() {
                return Err("the name is empty".into());
            }
            if let Some((_, first)) = names.iter().find(|(n, _)| **n == *name) {
                return Err(format!("the name is already used by {first}"));
            }
            let name: Arc<str> = name.into();
            names.push((Arc::clone(&name), here));
            Ok(name)
        };
        let mut tokens: Vec<Token> = Vec::with_capacity(file.token.len());
        for (index, table) in file.token.iter().enumerate() {
            let named = table
                .get("name")
                .and_then(toml::Value::as_str)
                .unwrap_or_default();
            let refuse = refuse("token", index, named);
            let entry = Entry::new(table, TOKEN_KEYS).map_err(&refuse)?;
            let name = entry.required("name").map_err(&refuse)?;
            let digest = entry.required("sha256").map_err(&refuse)?;
            let role = entry.role().map_err(&refuse)?;
            let limits = entry.limits().map_err(&refuse)?;
            let name = unique(name, format!("token[{index}]")).map_err(&refuse)?;
            let sha256 = hex32(digest).ok_or_else(|| {
                refuse(format!(
                    "sha256 must be 64 hex digits (the SHA-256 of the token, never the token), got {} characters",
                    digest.chars().count()
                ))
            })?;
            if let Some(first) = tokens.iter().position(|t| t.sha256 == sha256) {
                return Err(refuse(format!(
                    "the same token (sha256) as token[{first}] {:?}: give each its own token",
                    tokens[first].name
                )));
            }
            tokens.push(Token {
                name,
                sha256,
                role,
                limits,
            });
        }
        let mut certificates: Vec<Certificate> = Vec::with_capacity(file.certificate.len());
        for (index, table) in file.certificate.iter().enumerate() {
            let named = ["name", "subject"]
                .iter()
                .find_map(|k| table.get(*k).and_then(toml::Value::as_str))
                .unwrap_or_default();
            let refuse = refuse("certificate", index, named);
            let entry = Entry::new(table, CERTIFICATE_KEYS).map_err(&refuse)?;
            let written = entry.required("subject").map_err(&refuse)?;
            let subject = Subject::parse(written).map_err(|e| refuse(format!("subject: {e}")))?;
            let role = entry.role().map_err(&refuse)?;
            let limits = entry.limits().map_err(&refuse)?;
            let name = entry.text("name").map_err(&refuse)?.unwrap_or(written);
            let name = unique(name, format!("certificate[{index}]")).map_err(&refuse)?;
            if let Some(first) = certificates.iter().position(|c| c.subject == subject) {
                return Err(refuse(format!(
                    "the same subject as certificate[{first}] {:?}",
                    certificates[first].name
                )));
            }
            certificates.push(Certificate {
                name,
                subject,
                role,
                limits,
            });
        }
        Ok(Tokens { tokens, certificates })
    }

    /// Refuses `[[certificate]]` tables when no client certificate is asked for
    /// (`mtls` false): such a role could never apply, so it is a mistake to say so.
    pub fn require_mtls(&self, path: &Path, mtls: bool) -> Result<(), TokensError> {
        match self.certificates.first() {
            Some(first) if !mtls => Err(TokensError::NoClientCa {
                path: path.to_owned(),
                name: first.name.to_string(),
            }),
            _ => Ok(()),
        }
    }

    /// The certificate role whose subject is `subject`.
    pub fn certificate(&self, subject: &Subject) -> Option<&Certificate> {
        self.certificates.iter().find(|c| c.subject == *subject)
    }

    /// The token at `index` (an index [`Tokens::position`] gave).
    pub fn token(&self, index: usize) -> Option<&Token> {
        self.tokens.get(index)
    }

    /// How many tokens and certificate roles there are.
    pub fn len(&self) -> usize {
        self.tokens.len() + self.certificates.len()
    }

    /// Whether there is none (never, for a checked file).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The token whose SHA-256 is that of `presented`. Every digest is compared, each in
    /// constant time, so the time taken does not depend on how much of one matched.
    pub fn find(&self, presented: &[u8]) -> Option<&Token> {
        self.position(presented).and_then(|i| self.tokens.get(i))
    }

    /// [`Tokens::find`], as the token's index.
    pub fn position(&self, presented: &[u8]) -> Option<usize> {
        let digest: [u8; 32] = Sha256::digest(presented).into();
        let mut found = None;
        for (index, token) in self.tokens.iter().enumerate() {
            if bool::from(token.sha256.ct_eq(&digest)) {
                found = Some(index);
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
