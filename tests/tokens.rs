//! Bearer tokens are hashed at rest, expire, and can be revoked.
//!
//! A token is shown once, by `relay admin token create`; the data directory
//! only ever holds the sha256 of its secret. A token stops working when it
//! expires or is revoked, and a token that was altered, forged or presented
//! the wrong way never signs anybody in. Every refusal is `401 unauthorized`
//! with `WWW-Authenticate: Bearer`.

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use reqwest::header::{AUTHORIZATION, WWW_AUTHENTICATE};
use serde_json::Value;
use sha2::{Digest, Sha256};
use support::{Relay, Server};

/// A token as `relay admin token create` reports it.
struct Issued {
    /// The token id from the stderr line, hyphenated.
    id: String,
    /// The full `relay_<id>_<secret>` string from stdout.
    token: String,
}

impl Issued {
    /// The 64 hex digits after the last `_`.
    fn secret_hex(&self) -> &str {
        self.token.rsplit('_').next().expect("secret part")
    }
}

/// An office user; returns its id.
fn office_user(relay: &Relay) -> String {
    let office = relay.create_office("Token Clinic");
    relay.create_office_user(&office)
}

/// Runs `relay admin token create --user USER [--expires-in LIFETIME]`.
fn create_token(relay: &Relay, user: &str, expires_in: Option<&str>) -> Issued {
    let mut args = vec!["admin", "token", "create", "--user", user];
    if let Some(lifetime) = expires_in {
        args.extend(["--expires-in", lifetime]);
    }
    let out = relay.run(&args);
    let stderr = String::from_utf8(out.stderr).expect("utf-8 stderr");
    assert!(out.status.success(), "token create failed: {stderr}");
    let token = String::from_utf8(out.stdout)
        .expect("utf-8 stdout")
        .trim()
        .to_owned();
    // "token <id> expires …" or "token <id> never expires …"
    let id = stderr
        .split_whitespace()
        .skip_while(|w| *w != "token")
        .nth(1)
        .unwrap_or_else(|| panic!("no token id on stderr: {stderr}"))
        .to_owned();
    assert_eq!(id.len(), 36, "a hyphenated uuid: {id}");
    assert!(
        token.starts_with(&format!("relay_{}_", id.replace('-', ""))),
        "the token carries its id: {token} / {id}"
    );
    assert_eq!(token.len(), "relay_".len() + 32 + 1 + 64, "{token}");
    assert!(
        !stderr.contains(&token),
        "the token is printed on stdout only"
    );
    Issued { id, token }
}

/// `relay admin token list [--user USER]` as parsed JSON lines, with the
/// raw stdout.
fn list_tokens(relay: &Relay, user: Option<&str>) -> (Vec<Value>, String) {
    let mut args = vec!["admin", "token", "list"];
    if let Some(user) = user {
        args.extend(["--user", user]);
    }
    let stdout = relay.ok(&args);
    let lines = stdout
        .lines()
        .map(|line| serde_json::from_str(line).expect("a JSON line"))
        .collect();
    (lines, stdout)
}

/// The listed token with this id.
fn listed(relay: &Relay, user: &str, id: &str) -> Value {
    let (tokens, _) = list_tokens(relay, Some(user));
    tokens
        .into_iter()
        .find(|t| t["id"] == id)
        .unwrap_or_else(|| panic!("token {id} not listed"))
}

/// A `GET /api/v1/me` answer.
struct Reply {
    status: u16,
    www_authenticate: Option<String>,
    body: Value,
}

impl Reply {
    /// Checks a `401 unauthorized` whose message contains `says`.
    fn is_unauthorized(&self, says: &str, what: &str) {
        assert_eq!(self.status, 401, "{what}: {}", self.body);
        assert_eq!(self.body["error"], "unauthorized", "{what}: {}", self.body);
        let message = self.body["message"].as_str().expect("message");
        assert!(
            message.contains(says),
            "{what}: expected the message to contain {says:?}: {message}"
        );
        assert_eq!(
            self.www_authenticate.as_deref(),
            Some("Bearer"),
            "{what}: WWW-Authenticate"
        );
    }
}

/// `GET /api/v1/me` with this `Authorization` value (no header when `None`).
async fn me_with(server: &Server, authorization: Option<&str>) -> Reply {
    let mut request = server.http.get(server.url("/api/v1/me"));
    if let Some(value) = authorization {
        request = request.header(AUTHORIZATION, value);
    }
    let response = request.send().await.expect("request sent");
    let status = response.status().as_u16();
    let www_authenticate = response
        .headers()
        .get(WWW_AUTHENTICATE)
        .map(|v| v.to_str().expect("ascii header").to_owned());
    let text = response.text().await.expect("body read");
    let body = serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text:?}"));
    Reply {
        status,
        www_authenticate,
        body,
    }
}

async fn me(server: &Server, token: &str) -> Reply {
    me_with(server, Some(&format!("Bearer {token}"))).await
}

/// Checks the token signs in as `user`.
async fn signs_in(server: &Server, token: &str, user: &str) {
    let reply = me(server, token).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.body["user_id"], user);
    assert_eq!(reply.body["role"], "office");
}

/// Every file under `dir`, recursively.
fn files_under(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).expect("read data dir") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            files.extend(files_under(&path));
        } else {
            files.push(path);
        }
    }
    files
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[tokio::test]
async fn only_the_sha256_of_the_secret_is_stored() {
    let relay = Relay::new();
    let user = office_user(&relay);
    let issued = create_token(&relay, &user, None);
    let server = relay.start();
    // Use it, so whatever the server writes on a sign-in is on disk too.
    signs_in(&server, &issued.token, &user).await;

    let secret_hex = issued.secret_hex();
    let secret = hex::decode(secret_hex).expect("secret is hex");
    assert_eq!(secret.len(), 32, "256 random bits");
    let digest = hex::encode(Sha256::digest(&secret));

    let files = files_under(&relay.data_dir());
    assert!(
        files.iter().any(|f| f.ends_with("relay.db")),
        "the catalog is in the data directory: {files:?}"
    );
    let mut everything = Vec::new();
    for file in &files {
        let bytes = std::fs::read(file).expect("read data file");
        let name = file.display();
        assert!(
            !contains(&bytes, issued.token.as_bytes()),
            "{name} holds the token"
        );
        for form in [secret_hex.to_owned(), secret_hex.to_uppercase()] {
            assert!(
                !contains(&bytes, form.as_bytes()),
                "{name} holds the secret"
            );
        }
        assert!(
            !contains(&bytes, &secret),
            "{name} holds the raw secret bytes"
        );
        everything.extend(bytes);
    }
    // The scan looked where the token row is: its id and digest are there.
    assert!(
        contains(&everything, issued.id.as_bytes()),
        "the token id is not in the data files; the scan missed the catalog"
    );
    assert!(
        contains(&everything, digest.as_bytes()),
        "the digest is not in the data files"
    );

    let mut db = relay.database().await;
    let stored: String = sqlx::query_scalar("SELECT secret_sha256 FROM tokens WHERE id = ?")
        .bind(&issued.id)
        .fetch_one(&mut db)
        .await
        .expect("token row");
    assert_eq!(stored, digest);
    assert_ne!(stored, secret_hex);
}

#[tokio::test]
async fn a_token_stops_working_when_it_expires() {
    let relay = Relay::new();
    let user = office_user(&relay);
    let server = relay.start();

    let issued_at = Instant::now();
    let issued = create_token(&relay, &user, Some("2s"));
    signs_in(&server, &issued.token, &user).await;

    let mut db = relay.database().await;
    let (created_at, expires_at): (i64, Option<i64>) =
        sqlx::query_as("SELECT created_at, expires_at FROM tokens WHERE id = ?")
            .bind(&issued.id)
            .fetch_one(&mut db)
            .await
            .expect("token row");
    let lifetime = expires_at.expect("an expiry") - created_at;
    assert!(
        (1900..=2000).contains(&lifetime),
        "expires 2 s after creation, not {lifetime} ms"
    );
    assert!(listed(&relay, &user, &issued.id)["expires_at"].is_string());

    let deadline = issued_at + Duration::from_secs(5);
    let reply = loop {
        let reply = me(&server, &issued.token).await;
        if reply.status != 200 || Instant::now() > deadline {
            break reply;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let elapsed = issued_at.elapsed();
    reply.is_unauthorized("expired", "after expiry");
    assert!(
        elapsed >= Duration::from_millis(1900),
        "the token expired early, after {elapsed:?}"
    );
    // And it stays expired.
    me(&server, &issued.token)
        .await
        .is_unauthorized("expired", "again");
}

#[tokio::test]
async fn a_token_revoked_by_id_stops_working_and_only_that_one() {
    let relay = Relay::new();
    let user = office_user(&relay);
    let server = relay.start();
    let revoked = create_token(&relay, &user, None);
    let kept = create_token(&relay, &user, None);
    signs_in(&server, &revoked.token, &user).await;
    assert_eq!(
        listed(&relay, &user, &revoked.id)["revoked_at"],
        Value::Null
    );

    let out = relay.ok(&["admin", "token", "revoke", &revoked.id]);
    assert_eq!(out, revoked.id, "revoke prints the id");

    me(&server, &revoked.token)
        .await
        .is_unauthorized("revoked", "revoked by id");
    signs_in(&server, &kept.token, &user).await;
    assert!(listed(&relay, &user, &revoked.id)["revoked_at"].is_string());
    assert_eq!(listed(&relay, &user, &kept.id)["revoked_at"], Value::Null);

    // Revoking again succeeds and keeps the first revocation time.
    let first = listed(&relay, &user, &revoked.id)["revoked_at"].clone();
    relay.ok(&["admin", "token", "revoke", &revoked.id]);
    assert_eq!(listed(&relay, &user, &revoked.id)["revoked_at"], first);
}

#[tokio::test]
async fn a_token_revoked_by_its_full_string_stops_working() {
    let relay = Relay::new();
    let user = office_user(&relay);
    let server = relay.start();
    let issued = create_token(&relay, &user, None);
    signs_in(&server, &issued.token, &user).await;

    let out = relay.run(&["admin", "token", "revoke", &issued.token]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), issued.id);
    assert!(
        !stderr.contains(issued.secret_hex()),
        "revoke echoes the secret: {stderr}"
    );

    me(&server, &issued.token)
        .await
        .is_unauthorized("revoked", "revoked by token");
    assert!(listed(&relay, &user, &issued.id)["revoked_at"].is_string());
}

#[tokio::test]
async fn revoking_an_unknown_token_fails_helpfully() {
    let relay = Relay::new();
    let user = office_user(&relay);
    let issued = create_token(&relay, &user, None);
    let unknown_token = format!(
        "relay_{}_{}",
        "0190f5d28a4b7c3d9e0f112233445566",
        issued.secret_hex()
    );
    for (target, says) in [
        ("0190f5d2-8a4b-7c3d-9e0f-112233445566", "no such token"),
        (unknown_token.as_str(), "no such token"),
        ("not-a-token", "not a token id or token"),
        ("relay_abc_def", "not a token id or token"),
    ] {
        let out = relay.run(&["admin", "token", "revoke", target]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{target}: revoke succeeded");
        assert!(
            stderr.contains(says),
            "{target}: expected {says:?} on stderr: {stderr}"
        );
        assert!(
            String::from_utf8_lossy(&out.stdout).trim().is_empty(),
            "{target}: a failed revoke prints no id"
        );
    }
    // Nothing was revoked along the way.
    assert_eq!(listed(&relay, &user, &issued.id)["revoked_at"], Value::Null);
}

#[tokio::test]
async fn listing_tokens_never_shows_a_secret() {
    let relay = Relay::new();
    let user = office_user(&relay);
    let other = office_user(&relay);
    let mine = create_token(&relay, &user, None);
    let theirs = create_token(&relay, &other, Some("never"));
    let secret = hex::decode(mine.secret_hex()).expect("hex");
    let digest = hex::encode(Sha256::digest(&secret));

    let (all, stdout) = list_tokens(&relay, None);
    assert_eq!(all.len(), 2, "{stdout}");
    let (only_mine, mine_stdout) = list_tokens(&relay, Some(&user));
    assert_eq!(only_mine.len(), 1, "{mine_stdout}");
    assert_eq!(only_mine[0]["id"], mine.id);
    assert_eq!(only_mine[0]["user_id"], user);

    for issued in [&mine, &theirs] {
        for text in [&stdout, &mine_stdout] {
            assert!(!text.contains(&issued.token), "list printed a token");
            assert!(!text.contains(issued.secret_hex()), "list printed a secret");
        }
    }
    assert!(!stdout.contains(&digest), "list printed a digest");
    for token in &all {
        let mut keys: Vec<&str> = token
            .as_object()
            .expect("object")
            .keys()
            .map(String::as_str)
            .collect();
        keys.sort_unstable();
        assert_eq!(
            keys,
            ["created_at", "expires_at", "id", "revoked_at", "user_id"],
            "{token}"
        );
    }
}

#[tokio::test]
async fn an_altered_or_forged_token_is_invalid() {
    let relay = Relay::new();
    let user = office_user(&relay);
    let server = relay.start();
    let issued = create_token(&relay, &user, None);
    let other = create_token(&relay, &user, None);
    signs_in(&server, &issued.token, &user).await;

    let secret = issued.secret_hex();
    let prefix = &issued.token[..issued.token.len() - secret.len()];
    let flip = |c: char| if c == '0' { '1' } else { '0' };
    let last_flipped = format!(
        "{prefix}{}{}",
        &secret[..63],
        flip(secret.chars().last().expect("char"))
    );
    let first_flipped = format!(
        "{prefix}{}{}",
        flip(secret.chars().next().expect("char")),
        &secret[1..]
    );
    // The real id with another real token's secret.
    let swapped = format!("{prefix}{}", other.secret_hex());
    // A well-formed token whose id does not exist.
    let unknown_id = format!("relay_0190f5d28a4b7c3d9e0f112233445566_{secret}");
    for (what, forged) in [
        ("last secret digit changed", &last_flipped),
        ("first secret digit changed", &first_flipped),
        ("another token's secret", &swapped),
        ("unknown id", &unknown_id),
    ] {
        assert_ne!(forged, &issued.token);
        let reply = me(&server, forged).await;
        reply.is_unauthorized("invalid token", what);
        assert_eq!(reply.body["message"], "invalid token", "{what}");
    }

    // A forged secret says "invalid" even once the token is revoked, so a
    // guesser learns nothing about the token's state.
    relay.ok(&["admin", "token", "revoke", &issued.id]);
    me(&server, &last_flipped)
        .await
        .is_unauthorized("invalid token", "forged after revocation");
    me(&server, &issued.token)
        .await
        .is_unauthorized("revoked", "real after revocation");
    signs_in(&server, &other.token, &user).await;
}

#[tokio::test]
async fn malformed_authorization_headers_are_refused() {
    let relay = Relay::new();
    let user = office_user(&relay);
    let server = relay.start();
    let issued = create_token(&relay, &user, None);
    signs_in(&server, &issued.token, &user).await;
    let token = issued.token.as_str();
    let secret = issued.secret_hex();

    let truncated = &token[..token.len() - 1];
    let cases: Vec<(&str, Option<String>)> = vec![
        ("no header", None),
        ("empty header", Some(String::new())),
        ("scheme only", Some("Bearer".to_owned())),
        ("empty bearer", Some("Bearer ".to_owned())),
        ("garbage", Some("Bearer garbage".to_owned())),
        ("prefix only", Some("Bearer relay_".to_owned())),
        ("token without scheme", Some(token.to_owned())),
        ("secret only", Some(format!("Bearer {secret}"))),
        ("truncated token", Some(format!("Bearer {truncated}"))),
        ("token with extra digit", Some(format!("Bearer {token}0"))),
        ("token with suffix", Some(format!("Bearer {token}_x"))),
        ("two tokens", Some(format!("Bearer {token} {token}"))),
        (
            "basic scheme",
            Some("Basic dXNlcjpwYXNzd29yZA==".to_owned()),
        ),
        ("basic with the token", Some(format!("Basic {token}"))),
        ("token scheme", Some(format!("Token {token}"))),
        (
            "upper-case prefix",
            Some(format!("Bearer {}", token.replacen("relay_", "RELAY_", 1))),
        ),
    ];
    for (what, value) in cases {
        let reply = me_with(&server, value.as_deref()).await;
        reply.is_unauthorized("", what);
        assert!(reply.body.get("field").is_none(), "{what}: {}", reply.body);
    }
    // A missing or non-bearer header says how to send one.
    for value in [None, Some("Basic dXNlcjpwYXNzd29yZA==")] {
        me_with(&server, value)
            .await
            .is_unauthorized("Authorization: Bearer", &format!("{value:?}"));
    }
    // The scheme is case-insensitive (RFC 9110), so these still sign in.
    for scheme in ["bearer", "BEARER"] {
        let reply = me_with(&server, Some(&format!("{scheme} {token}"))).await;
        assert_eq!(reply.status, 200, "{scheme}: {}", reply.body);
    }
}

#[tokio::test]
async fn lifetimes_are_never_or_a_duration() {
    let relay = Relay::new();
    let user = office_user(&relay);

    let forever = create_token(&relay, &user, Some("never"));
    let listed_forever = listed(&relay, &user, &forever.id);
    assert_eq!(
        listed_forever["expires_at"],
        Value::Null,
        "{listed_forever}"
    );
    assert!(listed_forever["created_at"].is_string());

    // The default is 90 days.
    let default = create_token(&relay, &user, None);
    let mut db = relay.database().await;
    let (created_at, expires_at): (i64, Option<i64>) =
        sqlx::query_as("SELECT created_at, expires_at FROM tokens WHERE id = ?")
            .bind(&default.id)
            .fetch_one(&mut db)
            .await
            .expect("token row");
    let ninety_days = 90 * 24 * 3600 * 1000;
    let lifetime = expires_at.expect("an expiry") - created_at;
    assert!(
        (ninety_days - 1000..=ninety_days).contains(&lifetime),
        "expires 90 days after creation, not {lifetime} ms"
    );

    for bad in ["soon", "0s", "", "12 parsecs", "never ever"] {
        let out = relay.run(&[
            "admin",
            "token",
            "create",
            "--user",
            &user,
            "--expires-in",
            bad,
        ]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "--expires-in {bad:?} succeeded");
        assert!(
            stderr.contains("--expires-in"),
            "{bad:?}: stderr names the flag: {stderr}"
        );
        assert!(
            String::from_utf8_lossy(&out.stdout).trim().is_empty(),
            "{bad:?}: a token was printed"
        );
    }
    let (tokens, stdout) = list_tokens(&relay, Some(&user));
    assert_eq!(tokens.len(), 2, "a refused create stored a token: {stdout}");

    let server = relay.start();
    signs_in(&server, &forever.token, &user).await;
}
