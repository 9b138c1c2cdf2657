//! The `[[protectors]]` of the `--config` file, read again for a SIGHUP reload.
//!
//! The whole file is parsed and every entry checked as at start (names, duplicates,
//! policies, `max_protectors`), so a file that would not start the daemon is refused
//! whole and nothing of it is applied. Only `[[protectors]]` is applied: every other
//! setting keeps the value the daemon started with until a restart. Applying is the
//! daemon's (`crate::reload`).

use std::collections::BTreeMap;
use std::path::Path;

use resilient_circuit_breaker::Rules;

use super::error::ConfigError;
use super::file::FileConfig;
use super::load::protectors;
use super::types::{Limits, ProtectorConfig};

/// What the file declares: the protectors to create or update, with their rules, and
/// the names marked `delete = true`.
#[derive(Debug, Clone, Default)]
pub struct Declared {
    /// Created if absent, their policy set if it differs.
    pub protectors: Vec<ProtectorConfig>,
    /// The optional rules of `protectors`, by name (see `Config::protector_rules`).
    pub rules: BTreeMap<String, Rules>,
    /// Deleted if present.
    pub deleted: Vec<String>,
}

impl Declared {
    /// Reads and checks `path` under `limits` (the daemon's, as it started).
    pub fn read(path: &Path, limits: &Limits) -> Result<Declared, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|error| ConfigError::ReadFile {
            path: path.to_owned(),
            error,
        })?;
        let file: FileConfig = toml::from_str(&text).map_err(|error| ConfigError::ParseFile {
            path: path.to_owned(),
            error,
        })?;
        let (protectors, rules) = protectors(path, &file.protectors, limits)?;
        let deleted = file
            .protectors
            .iter()
            .filter(|e| e.delete)
            .map(|e| e.name.clone())
            .collect();
        Ok(Declared {
            protectors,
            rules,
            deleted,
        })
    }
}
