//! The OpenAPI document held to the server by a fuzzer. Schemathesis (from
//! PyPI, `.ci/peers`) reads `/api/v1/openapi.json` from the real `relay`
//! binary and sends every operation requests it generates from the
//! document, valid and invalid (its coverage and fuzzing phases, a fixed
//! seed), as an office user, a specialist and an administrator. Every check
//! it has must pass: no server error; every status, content type, header
//! and body as documented; invalid input refused and valid input accepted;
//! no operation that declares the bearer scheme answering without a valid
//! token.
//!
//! Path parameters are drawn, most of the time, from the ids of real
//! objects seeded first (a draft case with a DICOM image, a submitted one,
//! a reported one with a photo, a job, a reprocess run, a resumable
//! upload), so requests reach the code behind the lookups.
//!
//! What the checks cannot know is said, operation by operation, in
//! [`config`]. Schemathesis's own hooks (serializers for the binary bodies)
//! are in `tests/openapi_fuzz/hooks.py`. Without `RELAY_TEST_PYTHON` the
//! test skips loudly, or fails under `RELAY_REQUIRE_SERVICES=1`.

mod support;

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use support::routes::{Setup, Target, prepared};
use support::{Relay, Server};

/// The generator's seed: a failure is replayed by running the test again.
/// `RELAY_FUZZ_SEED` overrides it, for longer hunts.
const SEED: u64 = 20_240_601;

/// Test cases per operation and phase: enough to find what the first
/// examples do not, few enough for a debug build on two cores.
/// `RELAY_FUZZ_EXAMPLES` overrides it.
const MAX_EXAMPLES: u64 = 20;

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The objects the fuzzer's path parameters are drawn from.
struct Seed {
    cases: Vec<String>,
    images: Vec<String>,
    uids: [String; 3],
    job: String,
    run: String,
    upload: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Office,
    Specialist,
    Admin,
}

#[tokio::test]
async fn schemathesis_finds_no_fault_in_the_api() {
    let Some(python) =
        relay_workers::testing::python_peers("schemathesis_finds_no_fault_in_the_api")
    else {
        return;
    };
    let relay = Relay::new();
    let (_, _, office) = relay.office_with_user("Fuzz Clinic");
    let dermatologist = relay.specialist_token("dermatology");
    let admin = relay.admin_token();
    // `ignored_auth` sends every protected operation a missing and a wrong
    // token, far more often than the sign-in throttle allows one address
    // (tests/auth_throttle.rs covers the throttle).
    let config_file = relay.dir().join("relay.toml");
    std::fs::write(&config_file, "auth_failure_burst = 1000000\n").expect("config written");
    let server = relay.start_with(
        &[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--config",
            config_file.to_str().expect("utf-8 path"),
        ],
        &[],
    );
    let seed = seed(&relay, &server, &office, &dermatologist).await;

    for (role, token) in [
        (Role::Office, &office),
        (Role::Specialist, &dermatologist),
        (Role::Admin, &admin),
    ] {
        let started = Instant::now();
        let toml = relay.dir().join(format!("schemathesis-{role:?}.toml"));
        std::fs::write(&toml, config(role, token, &seed)).expect("config written");
        let out = Command::new(&python)
            .args(["-m", "schemathesis.cli", "--config-file"])
            .arg(&toml)
            .args(["run", "--no-color", "--checks", "all"])
            .arg(server.url("/api/v1/openapi.json"))
            .current_dir(relay.dir())
            .env("NO_COLOR", "1")
            .output()
            .expect("schemathesis runs");
        let report = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        eprintln!(
            "schemathesis as the {role:?} took {:.0?}:\n{}",
            started.elapsed(),
            summary(&report)
        );
        assert!(
            out.status.success(),
            "schemathesis found faults as the {role:?} ({}):\n{report}\nserver log:\n{}",
            out.status,
            tail(&server.log(), 200)
        );
    }
    server.stop();
}

/// Real objects of every kind a path names.
async fn seed(relay: &Relay, server: &Server, office: &str, specialist: &str) -> Seed {
    let draft = prepared(relay, server, office, specialist, Setup::Draft).await;
    let submitted = prepared(relay, server, office, specialist, Setup::Submitted).await;
    let reported = server.signed_case(office, specialist).await;
    let (status, photos) = server
        .get(&format!("/api/v1/cases/{reported}/images"), office)
        .await;
    assert_eq!(status, 200, "{photos}");
    let photo = photos[0]["id"].as_str().expect("image id").to_owned();
    // Renditions exist before the fuzzer asks for them (and `202` is
    // documented for when they do not).
    for image in [&draft.image, &photo] {
        let derived = server.derived(office, image).await;
        assert_eq!(derived["derive_state"], "ready", "{derived}");
    }
    let Target {
        case,
        image,
        job,
        run,
        upload,
        uids,
    } = draft;
    Seed {
        cases: vec![case, submitted.case, reported],
        images: vec![image, submitted.image, photo],
        uids,
        job,
        run,
        upload,
    }
}

/// Schemathesis's configuration for one role's run.
fn config(role: Role, token: &str, seed: &Seed) -> String {
    let hooks = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/openapi_fuzz/hooks.py");
    let list = |values: &[&str]| {
        values
            .iter()
            .map(|v| format!("{v:?}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let cases: Vec<&str> = seed.cases.iter().map(String::as_str).collect();
    let images: Vec<&str> = seed.images.iter().map(String::as_str).collect();
    let [study, series, instance] = &seed.uids;
    let seed_number = env_number("RELAY_FUZZ_SEED", SEED);
    let max_examples = env_number("RELAY_FUZZ_EXAMPLES", MAX_EXAMPLES);
    let mut toml = format!(
        r#"hooks = {hooks:?}
seed = {seed_number}
# One worker: hypothesis, on two threads, has crashed CPython 3.11's parser
# ("AST constructor recursion depth mismatch") describing a filter.
workers = 1
request-timeout = 30

[cache]
enabled = false

[generation]
max-examples = {max_examples}
database = "none"

# Sequences of calls linked by the ids they answer with: only an office
# creates anything (cases, images, uploads) for others to follow.
[phases.stateful]
enabled = {stateful}
max-steps = 20

[auth.openapi.bearer]
bearer = "{token}"

[dictionaries.case]
values = [{cases}]
[dictionaries.image]
values = [{images}]
[dictionaries.job]
values = [{job}]
[dictionaries.run]
values = [{run:?}]
[dictionaries.upload]
values = [{upload:?}]
[dictionaries.study]
values = [{study:?}]
[dictionaries.series]
values = [{series:?}]
[dictionaries.instance]
values = [{instance:?}]

[parameters]
"path.study" = {{ dictionary = "study", probability = 0.7 }}
"path.series" = {{ dictionary = "series", probability = 0.7 }}
"path.instance" = {{ dictionary = "instance", probability = 0.7 }}

[[operations]]
include-path-regex = "^/api/v1/cases/"
parameters = {{ "path.id" = {{ dictionary = "case", probability = 0.7 }} }}

[[operations]]
include-path-regex = "^/api/v1/images/"
parameters = {{ "path.id" = {{ dictionary = "image", probability = 0.7 }} }}

[[operations]]
include-path-regex = "^/api/v1/admin/jobs/"
parameters = {{ "path.id" = {{ dictionary = "job", probability = 0.7 }} }}

[[operations]]
include-path-regex = "^/api/v1/admin/reprocess/"
parameters = {{ "path.id" = {{ dictionary = "run", probability = 0.7 }} }}

[[operations]]
include-path-regex = "^/api/v1/uploads/"
parameters = {{ "path.id" = {{ dictionary = "upload", probability = 0.7 }} }}

# Separate `include-…` keys of one entry select the operations any of them
# matches, so each entry below names its operations by one regex.

# tus 1.0.0 answers a request without `Tus-Resumable: 1.0.0` with 412
# Precondition Failed, whatever else is wrong with it, and an
# `Upload-Length` over `Tus-Max-Size` (a setting) with 413.
[[operations]]
include-path-regex = '^/api/v1/uploads'
checks = {{ negative_data_rejection = {{ expected-statuses = [400, 401, 403, 404, 405, 406, 409, 412, 413, 415, 422, 428, 429, "5xx"] }}, missing_required_header = {{ expected-statuses = [400, 401, 403, 406, 412, 415, 422] }} }}

# Whether the bytes of an upload are an image, a DICOM file or the next
# chunk of one (and match their digest, checksum or declared length), and
# whether tus metadata names a case of the caller's, is beyond a schema:
# bytes that fit it may still be refused as the README's error table says.
[[operations]]
include-name-regex = '^(POST /api/v1/cases/\{{id\}}/images|POST /api/v1/uploads|PATCH /api/v1/uploads/\{{id\}}|POST /dicomweb/studies(/\{{study\}})?)$'
checks = {{ positive_data_acceptance = {{ expected-statuses = ["2xx", "3xx", 400, 401, 403, 404, 409, 413, 415, 422, 429, 460, "5xx"] }} }}
"#,
        cases = list(&cases),
        images = list(&images),
        stateful = role == Role::Office,
        job = seed.job,
        run = seed.run,
        upload = seed.upload,
    );
    if role == Role::Admin {
        // An administrator's reprocess run works on stores named by URL
        // (`migrate`'s `to`, `verify`'s `repair_from`): fuzzed, it would
        // write wherever the generator points on the machine running the
        // tests. tests/reprocess.rs covers the route; the other roles' runs
        // here still check that it refuses them.
        toml.push_str(
            r#"
[[operations]]
include-name = "POST /api/v1/admin/reprocess"
enabled = false
"#,
        );
    }
    toml
}

/// Schemathesis's closing summary: from its `SUMMARY` line on.
fn summary(report: &str) -> &str {
    report.find("SUMMARY").map_or(report, |at| {
        &report[report[..at].rfind('\n').unwrap_or(0)..]
    })
}

/// The last `lines` lines of a log.
fn tail(log: &str, lines: usize) -> String {
    let all: Vec<&str> = log.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
