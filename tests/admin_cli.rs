//! `relay admin` is a contract other tools script against: each command
//! prints only its result on stdout (the new id or token on one line, or
//! JSON lines for listings) and human text on stderr; it honours the same
//! store settings as `relay serve`; a mistake fails with a non-zero exit,
//! nothing on stdout and a message saying what to do; and every change is
//! audited as the operator.

mod support;

use std::process::{Output, Stdio};

use serde_json::Value;
use support::Relay;

/// Runs `relay ARGS…` with `env`, whatever the outcome.
fn run_env(relay: &Relay, args: &[&str], env: &[(&str, &str)]) -> Output {
    relay
        .command()
        .args(args)
        .envs(env.iter().copied())
        .output()
        .expect("relay runs")
}

/// Runs a creating command: it must succeed and print exactly one line.
/// Returns (that line, stderr).
fn one_line(relay: &Relay, args: &[&str]) -> (String, String) {
    let out = relay.run(args);
    let stdout = String::from_utf8(out.stdout).expect("utf-8");
    let stderr = String::from_utf8(out.stderr).expect("utf-8");
    assert!(out.status.success(), "relay {args:?} failed: {stderr}");
    let line = stdout
        .strip_suffix('\n')
        .unwrap_or_else(|| panic!("relay {args:?}: stdout is not one line: {stdout:?}"));
    assert!(
        !line.contains('\n') && !line.is_empty(),
        "relay {args:?}: stdout is not exactly one line: {stdout:?}"
    );
    (line.to_owned(), stderr)
}

/// Runs a creating command that must print exactly one UUID line.
fn new_id(relay: &Relay, args: &[&str]) -> (String, String) {
    let (line, stderr) = one_line(relay, args);
    let parsed = uuid::Uuid::parse_str(&line)
        .unwrap_or_else(|e| panic!("relay {args:?}: {line:?} is not a UUID: {e}"));
    assert_eq!(parsed.hyphenated().to_string(), line, "canonical form");
    (line, stderr)
}

/// Asserts a mistake: non-zero exit, nothing on stdout, and stderr
/// containing every one of `needles`.
fn refused(relay: &Relay, args: &[&str], needles: &[&str]) {
    let out = relay.run(args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "relay {args:?} should fail; stderr: {stderr}"
    );
    assert!(
        out.stdout.is_empty(),
        "relay {args:?} printed on stdout: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    for needle in needles {
        assert!(
            stderr.contains(needle),
            "relay {args:?}: stderr should mention {needle:?}: {stderr}"
        );
    }
}

/// Parses every stdout line as JSON.
fn json_lines(out: &Output) -> Vec<Value> {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{line:?}: {e}")))
        .collect()
}

fn list(relay: &Relay, args: &[&str]) -> Vec<Value> {
    json_lines(&relay.run(args))
}

fn ids(items: &[Value]) -> Vec<String> {
    items
        .iter()
        .map(|v| v["id"].as_str().expect("id").to_owned())
        .collect()
}

fn create_office(relay: &Relay, args: &[&str]) -> String {
    let mut full = vec!["admin", "office", "create"];
    full.extend_from_slice(args);
    new_id(relay, &full).0
}

fn create_admin(relay: &Relay) -> String {
    new_id(
        relay,
        &[
            "admin", "user", "create", "--name", "Root", "--role", "admin",
        ],
    )
    .0
}

#[test]
fn office_create_prints_only_the_new_id() {
    let relay = Relay::new();
    let (id, stderr) = new_id(
        &relay,
        &["admin", "office", "create", "--name", "Harbour Clinic"],
    );
    assert!(stderr.contains("created office"), "{stderr}");
    assert!(stderr.contains(&id), "{stderr}");
    let offices = list(&relay, &["admin", "office", "list"]);
    assert_eq!(offices.len(), 1);
    assert_eq!(offices[0]["id"], id.as_str());
    assert_eq!(offices[0]["name"], "Harbour Clinic");
}

#[test]
fn user_create_prints_only_the_new_id_for_every_role() {
    let relay = Relay::new();
    let office = create_office(&relay, &["--name", "Hill Practice"]);
    let (front, stderr) = new_id(
        &relay,
        &[
            "admin",
            "user",
            "create",
            "--office",
            &office,
            "--name",
            "Front Desk",
            "--role",
            "office",
        ],
    );
    assert!(stderr.contains("created"), "{stderr}");
    let mut specialists = Vec::new();
    for specialty in ["dermatology", "radiology"] {
        let (id, _) = new_id(
            &relay,
            &[
                "admin",
                "user",
                "create",
                "--name",
                "Dr Reader",
                "--role",
                "specialist",
                "--specialty",
                specialty,
            ],
        );
        specialists.push((id, specialty));
    }
    let admin = create_admin(&relay);

    let users = list(&relay, &["admin", "user", "list"]);
    assert_eq!(users.len(), 4, "{users:?}");
    let find = |id: &str| {
        users
            .iter()
            .find(|u| u["id"] == id)
            .unwrap_or_else(|| panic!("user {id} not listed: {users:?}"))
    };
    assert_eq!(find(&front)["role"], "office");
    assert_eq!(find(&front)["office"], office.as_str());
    assert_eq!(find(&front)["name"], "Front Desk");
    for (id, specialty) in &specialists {
        assert_eq!(find(id)["role"], "specialist");
        assert_eq!(find(id)["specialty"], *specialty);
        assert!(find(id)["office"].is_null());
    }
    assert_eq!(find(&admin)["role"], "admin");
    assert!(find(&admin)["office"].is_null());
    assert!(find(&admin)["specialty"].is_null());

    // Filtered by office: only the office's staff.
    let staff = list(&relay, &["admin", "user", "list", "--office", &office]);
    assert_eq!(ids(&staff), vec![front]);
}

#[test]
fn token_create_prints_only_the_token() {
    let relay = Relay::new();
    let user = create_admin(&relay);
    for args in [
        vec!["admin", "token", "create", "--user", &user],
        vec![
            "admin",
            "token",
            "create",
            "--user",
            &user,
            "--expires-in",
            "90d",
        ],
    ] {
        let (token, stderr) = one_line(&relay, &args);
        assert!(token.starts_with("relay_"), "{token}");
        assert_eq!(token.len(), 103, "{token}");
        let secret = token.rsplit('_').next().expect("secret");
        assert!(
            !stderr.contains(secret),
            "the secret leaked to stderr: {stderr}"
        );
    }
    let tokens = list(&relay, &["admin", "token", "list", "--user", &user]);
    assert_eq!(tokens.len(), 2, "{tokens:?}");
    for token in &tokens {
        assert_eq!(token["user_id"], user.as_str());
        let time = |key: &str| {
            chrono::DateTime::parse_from_rfc3339(token[key].as_str().expect("timestamp"))
                .expect("RFC 3339")
        };
        let lifetime = (time("expires_at") - time("created_at")).num_seconds();
        assert!((lifetime - 90 * 86_400).abs() < 60, "{token}");
        assert!(token["revoked_at"].is_null());
    }
    // `never` is the documented way to issue a token without expiry.
    one_line(
        &relay,
        &[
            "admin",
            "token",
            "create",
            "--user",
            &user,
            "--expires-in",
            "never",
        ],
    );
    let tokens = list(&relay, &["admin", "token", "list", "--user", &user]);
    assert_eq!(
        tokens.iter().filter(|t| t["expires_at"].is_null()).count(),
        1,
        "{tokens:?}"
    );
}

/// The token id is the hex part after `relay_`, in UUID form.
fn token_id(token: &str) -> String {
    let hex = token
        .strip_prefix("relay_")
        .and_then(|rest| rest.split('_').next())
        .expect("token id part");
    uuid::Uuid::parse_str(hex)
        .expect("token id is a UUID")
        .hyphenated()
        .to_string()
}

#[test]
fn token_revoke_by_id_or_by_the_token_itself() {
    let relay = Relay::new();
    let user = create_admin(&relay);
    let first = relay.token_for(&user);
    let second = relay.token_for(&user);
    let first_id = token_id(&first);
    let second_id = token_id(&second);

    let (printed, stderr) = one_line(&relay, &["admin", "token", "revoke", &first_id]);
    assert_eq!(printed, first_id);
    assert!(stderr.contains("revoked"), "{stderr}");
    let (printed, _) = one_line(&relay, &["admin", "token", "revoke", &second]);
    assert_eq!(printed, second_id);

    let tokens = list(&relay, &["admin", "token", "list"]);
    let mut listed = ids(&tokens);
    listed.sort();
    let mut expected = vec![first_id, second_id];
    expected.sort();
    assert_eq!(listed, expected);
    for token in &tokens {
        assert!(token["revoked_at"].is_string(), "not revoked: {token}");
    }
    let out = relay.run(&["admin", "token", "list"]);
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains(first.rsplit('_').next().expect("secret")),
        "token list shows a secret"
    );
}

#[test]
fn data_dir_flag_and_relay_data_dir_choose_the_store() {
    let relay = Relay::new();
    let office = create_office(&relay, &["--name", "Elsewhere", "--data-dir", "other"]);
    assert!(relay.dir().join("other").join("relay.db").is_file());
    let there = list(&relay, &["admin", "office", "list", "--data-dir", "other"]);
    assert_eq!(ids(&there), vec![office.clone()]);
    let default = list(&relay, &["admin", "office", "list"]);
    assert!(
        default.is_empty(),
        "found in the default data dir: {default:?}"
    );

    let env = [("RELAY_DATA_DIR", "other")];
    let via_env = json_lines(&run_env(&relay, &["admin", "office", "list"], &env));
    assert_eq!(ids(&via_env), vec![office.clone()]);
    let out = run_env(
        &relay,
        &["admin", "office", "create", "--name", "From Env"],
        &env,
    );
    assert!(out.status.success());
    let from_env = String::from_utf8(out.stdout).expect("utf-8");
    let there = list(&relay, &["admin", "office", "list", "--data-dir", "other"]);
    assert!(ids(&there).contains(&from_env.trim().to_owned()));
    assert!(list(&relay, &["admin", "office", "list"]).is_empty());
}

#[test]
fn database_flag_chooses_the_store() {
    let relay = Relay::new();
    let db = relay.dir().join("explicit").join("catalog.db");
    let url = format!("sqlite://{}", db.display());
    let office = create_office(&relay, &["--name", "Explicit", "--database", &url]);
    assert!(db.is_file(), "no database at {db:?}");
    let there = list(&relay, &["admin", "office", "list", "--database", &url]);
    assert_eq!(ids(&there), vec![office]);
    let default = list(&relay, &["admin", "office", "list"]);
    assert!(
        default.is_empty(),
        "found in the default data dir: {default:?}"
    );
}

#[test]
fn config_flag_chooses_the_store() {
    let relay = Relay::new();
    std::fs::write(
        relay.dir().join("relay.toml"),
        "data_dir = \"configured\"\n",
    )
    .expect("write");
    let office = create_office(&relay, &["--name", "Configured", "--config", "relay.toml"]);
    let there = list(
        &relay,
        &["admin", "office", "list", "--data-dir", "configured"],
    );
    assert_eq!(ids(&there), vec![office.clone()]);
    let via_config = list(
        &relay,
        &["admin", "office", "list", "--config", "relay.toml"],
    );
    assert_eq!(ids(&via_config), vec![office]);
    assert!(list(&relay, &["admin", "office", "list"]).is_empty());
}

#[test]
fn role_mistakes_fail_saying_what_to_do() {
    let relay = Relay::new();
    let office = create_office(&relay, &["--name", "Rules Clinic"]);
    let create = ["admin", "user", "create", "--name", "Somebody"];
    let mistakes: [(&[&str], &[&str]); 6] = [
        (&["--role", "office"], &["--office"]),
        (&["--role", "specialist"], &["--specialty"]),
        (
            &["--role", "admin", "--office", &office],
            &["--office", "role office"],
        ),
        (
            &[
                "--role",
                "specialist",
                "--specialty",
                "radiology",
                "--office",
                &office,
            ],
            &["--office", "role office"],
        ),
        (&["--role", "janitor"], &["--role"]),
        (
            &["--role", "specialist", "--specialty", "cardiology"],
            &["--specialty"],
        ),
    ];
    for (extra, needles) in mistakes {
        let args: Vec<&str> = create.iter().chain(extra).copied().collect();
        refused(&relay, &args, needles);
    }
    // None of the refusals created anybody.
    assert!(list(&relay, &["admin", "user", "list"]).is_empty());
}

#[test]
fn unknown_ids_fail_naming_the_listing_to_consult() {
    let relay = Relay::new();
    let unknown = uuid::Uuid::now_v7().to_string();
    refused(
        &relay,
        &[
            "admin", "user", "create", "--name", "Lost", "--role", "office", "--office", &unknown,
        ],
        &["no such office", "relay admin office list"],
    );
    refused(
        &relay,
        &["admin", "token", "create", "--user", &unknown],
        &["no such user", "relay admin user list"],
    );
    refused(
        &relay,
        &["admin", "token", "revoke", &unknown],
        &["no such token", "relay admin token list"],
    );
    assert!(list(&relay, &["admin", "user", "list"]).is_empty());
    assert!(list(&relay, &["admin", "token", "list"]).is_empty());
}

#[test]
fn malformed_ids_and_empty_names_fail() {
    let relay = Relay::new();
    refused(
        &relay,
        &[
            "admin",
            "user",
            "create",
            "--name",
            "X",
            "--role",
            "office",
            "--office",
            "not-an-id",
        ],
        &["invalid --office"],
    );
    refused(
        &relay,
        &["admin", "token", "create", "--user", "12345"],
        &["invalid --user"],
    );
    refused(
        &relay,
        &["admin", "user", "list", "--office", "nope"],
        &["invalid --office"],
    );
    refused(
        &relay,
        &["admin", "token", "revoke", "relay_abc_def"],
        &["not a token id or token"],
    );
    for name in ["", "   "] {
        refused(
            &relay,
            &["admin", "office", "create", "--name", name],
            &["--name", "must not be empty"],
        );
        refused(
            &relay,
            &["admin", "user", "create", "--name", name, "--role", "admin"],
            &["--name", "must not be empty"],
        );
    }
    refused(
        &relay,
        &[
            "admin",
            "token",
            "create",
            "--user",
            &create_admin(&relay),
            "--expires-in",
            "soon",
        ],
        &["--expires-in"],
    );
    assert!(list(&relay, &["admin", "office", "list"]).is_empty());
    assert!(list(&relay, &["admin", "token", "list"]).is_empty());
}

#[test]
fn listings_are_json_lines_containing_the_created_ids() {
    let relay = Relay::new();
    let (office, user, _) = relay.office_with_user("Listing Clinic");
    let second_office = create_office(&relay, &["--name", "Second Listing Clinic"]);
    let admin = create_admin(&relay);
    let token = token_id(&relay.token_for(&admin));

    let offices = ids(&list(&relay, &["admin", "office", "list"]));
    assert_eq!(offices.len(), 2);
    assert!(offices.contains(&office) && offices.contains(&second_office));
    let users = ids(&list(&relay, &["admin", "user", "list"]));
    assert_eq!(users.len(), 2);
    assert!(users.contains(&user) && users.contains(&admin));
    let tokens = list(&relay, &["admin", "token", "list"]);
    assert_eq!(tokens.len(), 2);
    assert!(ids(&tokens).contains(&token));
    let admins = list(&relay, &["admin", "token", "list", "--user", &admin]);
    assert_eq!(ids(&admins), vec![token]);
}

#[test]
fn a_listing_whose_reader_goes_away_does_not_crash() {
    let relay = Relay::new();
    for n in 0..3 {
        relay.create_office(&format!("Office {n}"));
    }
    let mut child = relay
        .command()
        .args(["admin", "office", "list"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("relay runs");
    drop(child.stdout.take());
    let out = child.wait_with_output().expect("relay exits");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(out.status.success(), "{:?}: {stderr}", out.status);
}

#[test]
fn admin_changes_are_audited_as_the_operator() {
    let relay = Relay::new();
    let (office, user, token) = relay.office_with_user("Audited Clinic");
    let token_id = token_id(&token);
    relay.ok(&["admin", "token", "revoke", &token_id]);

    for (action, object) in [
        ("office.create", &office),
        ("user.create", &user),
        ("token.create", &token_id),
        ("token.revoke", &token_id),
    ] {
        let events = list(&relay, &["admin", "audit", "--action", action]);
        assert_eq!(events.len(), 1, "{action}: {events:?}");
        assert_eq!(events[0]["action"], action);
        assert_eq!(events[0]["actor"], "operator");
        assert_eq!(events[0]["object_id"], object.as_str(), "{action}");
    }
    let out = relay.run(&["admin", "audit"]);
    let secret = token.rsplit('_').next().expect("secret");
    assert!(!String::from_utf8_lossy(&out.stdout).contains(secret));
}

#[test]
fn version_and_admin_help() {
    let relay = Relay::new();
    let version = relay.ok(&["--version"]);
    assert_eq!(version, format!("relay {}", env!("CARGO_PKG_VERSION")));
    let help = relay.ok(&["admin", "--help"]);
    for command in ["office", "user", "token", "audit"] {
        assert!(
            help.lines()
                .any(|line| line.trim_start().starts_with(command)),
            "admin --help lacks {command}:\n{help}"
        );
    }
}
