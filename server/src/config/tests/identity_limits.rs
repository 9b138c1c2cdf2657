//! The per-identity limits: `--max-watchers-per-identity`,
//! `--max-sessions-per-identity` and `--max-protectors-per-identity`.

use super::{load_err, load_ok};

#[test]
fn per_identity_limits_come_from_the_flag_the_environment_the_file_or_the_default() {
    let file = "[limits]\nmax_watchers_per_identity = 3\nmax_sessions_per_identity = 4\nmax_protectors_per_identity = 5\n";
    let env = [
        ("CIRCUITD_MAX_WATCHERS_PER_IDENTITY", "30"),
        ("CIRCUITD_MAX_SESSIONS_PER_IDENTITY", "40"),
        ("CIRCUITD_MAX_PROTECTORS_PER_IDENTITY", "50"),
    ];
    let flags = [
        "--max-watchers-per-identity=300",
        "--max-sessions-per-identity=400",
        "--max-protectors-per-identity=500",
    ];
    type Case<'a> = (
        &'a [&'a str],
        &'a [(&'a str, &'a str)],
        Option<&'a str>,
        [usize; 3],
    );
    let cases: [Case<'_>; 4] = [
        (&[], &[], None, [1000, 1000, 10_000]),
        (&["--config", "c.toml"], &[], Some(file), [3, 4, 5]),
        (&["--config", "c.toml"], &env, Some(file), [30, 40, 50]),
        (&flags, &env, None, [300, 400, 500]),
    ];
    for (argv, env, file, expected) in cases {
        let l = load_ok(argv, env, file).config.limits;
        assert_eq!(
            [
                l.max_watchers_per_identity,
                l.max_sessions_per_identity,
                l.max_protectors_per_identity
            ],
            expected,
            "{argv:?} {env:?} {file:?}"
        );
    }
    let (_, message) = load_err(&[], &[("CIRCUITD_MAX_SESSIONS_PER_IDENTITY", "0")], None);
    assert!(
        message.contains("CIRCUITD_MAX_SESSIONS_PER_IDENTITY") && message.contains("at least 1"),
        "{message}"
    );
}
