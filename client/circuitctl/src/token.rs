//! `circuitctl token new NAME --role ROLE`: a fresh token, and the `[[token]]` table that
//! lets it in, for the daemon's tokens file (`circuitd --tokens FILE`).
//!
//! The token is 32 bytes from the thread-local CSPRNG (ChaCha, seeded from the operating
//! system), printed as 64 hex digits: 256 bits, so the daemon can store a plain SHA-256
//! of it (no salt or slow hash needed against guessing). The file gets only that digest;
//! the token is printed once, here, on stdout.

use std::io::Write;
use std::process::ExitCode;

use rand::Rng;
use sha2::{Digest, Sha256};

use crate::cli::{RoleArg, TokenCommand};
use crate::error::Failure;

/// Runs a `token` subcommand.
pub fn run(command: &TokenCommand) -> Result<ExitCode, Failure> {
    let TokenCommand::New { name, role } = command;
    let mut secret = [0u8; 32];
    rand::rng().fill_bytes(&mut secret);
    let token = hex(&secret);
    let text = table(name, &token, *role);
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())?;
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

/// What `token new` prints: the token, how to send it, and the table to paste.
fn table(name: &str, token: &str, role: RoleArg) -> String {
    let role = match role {
        RoleArg::Read => "read",
        RoleArg::Data => "data",
        RoleArg::Admin => "admin",
    };
    let digest = hex(&Sha256::digest(token.as_bytes()));
    // The name as a TOML basic string: quotes and backslashes escaped.
    let quoted = format!("{name:?}");
    // The token alone on the first line (`| head -1` takes it); pasted into the file by
    // mistake, that line is not TOML, so the daemon refuses the file rather than keep the
    // secret in it.
    format!(
        "{token}\n\n\
         # Give the token above to the client (--token, CIRCUIT_TOKEN, token=); it is not shown again.\n\
         # Paste this table into circuitd's tokens file (it holds only the SHA-256), then send it SIGHUP:\n\
         [[token]]\n\
         name = {quoted}\n\
         sha256 = \"{digest}\"\n\
         role = \"{role}\"\n"
    )
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_holds_the_digest_of_the_token_not_the_token() {
        let text = table("deploy-bot", "abc", RoleArg::Admin);
        assert!(text.contains("\n[[token]]\nname = \"deploy-bot\"\n"), "{text}");
        // SHA-256("abc").
        assert!(
            text.contains("sha256 = \"ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad\""),
            "{text}"
        );
        assert!(text.ends_with("role = \"admin\"\n"), "{text}");
        assert!(text.starts_with("abc\n\n#"), "{text}");
        assert_eq!(text.matches("abc").count(), 1, "the token once: {text}");
    }
}
