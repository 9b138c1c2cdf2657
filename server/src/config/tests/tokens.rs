//! `--tokens FILE` (`CIRCUITD_TOKENS`, the file's `tokens`): where the tokens file is.

use std::path::PathBuf;

use super::load_ok;

#[test]
fn the_tokens_file_from_flag_env_or_file_and_none_by_default() {
    assert_eq!(load_ok(&[], &[], None).config.tokens, None);
    let flag = load_ok(&["--tokens", "/etc/circuitd/tokens.toml"], &[], None);
    assert_eq!(
        flag.config.tokens,
        Some(PathBuf::from("/etc/circuitd/tokens.toml"))
    );
    let env = load_ok(&[], &[("CIRCUITD_TOKENS", "/run/tokens.toml")], None);
    assert_eq!(env.config.tokens, Some(PathBuf::from("/run/tokens.toml")));
    let file = load_ok(&["--config", "c.toml"], &[], Some("tokens = \"t.toml\"\n"));
    assert_eq!(file.config.tokens, Some(PathBuf::from("t.toml")));
    let both = load_ok(
        &["--config", "c.toml", "--tokens", "flag.toml"],
        &[],
        Some("tokens = \"t.toml\"\n"),
    );
    assert_eq!(both.config.tokens, Some(PathBuf::from("flag.toml")));
}
