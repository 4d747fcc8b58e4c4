//! Guessing tokens is slowed down per client address: after its budget of
//! failed authentications an address gets `429 too_many_attempts` with
//! `Retry-After`, before its credentials are looked at (a right token too),
//! while another address (another office) goes on signing in. Each test
//! talks from its own loopback addresses (127.0.0.x), which Linux routes to
//! the server on 127.0.0.1 like any other client.

mod support;

use std::net::IpAddr;
use std::time::{Duration, Instant};

use reqwest::header::RETRY_AFTER;
use support::{Relay, Server};

/// A client whose connections come from `address`.
fn client_from(address: [u8; 4]) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(IpAddr::from(address))
        .build()
        .expect("client")
}

/// `GET /api/v1/me` with `token`: status, `Retry-After` seconds, error code.
async fn me(server: &Server, client: &reqwest::Client, token: &str) -> (u16, Option<u64>, String) {
    let response = client
        .get(server.url("/api/v1/me"))
        .bearer_auth(token)
        .send()
        .await
        .expect("request sent");
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get(RETRY_AFTER)
        .map(|v| v.to_str().expect("ascii").parse().expect("whole seconds"));
    let body: serde_json::Value = response.json().await.unwrap_or_default();
    let code = body["error"].as_str().unwrap_or_default().to_owned();
    (status, retry_after, code)
}

/// A server allowing `burst` failures per address, one more per `refill`.
fn throttled_server(relay: &Relay, burst: u32, refill: &str) -> Server {
    let config = relay.dir().join("relay.toml");
    std::fs::write(
        &config,
        format!("auth_failure_burst = {burst}\nauth_failure_refill = \"{refill}\"\n"),
    )
    .expect("config written");
    relay.start_with(
        &[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--config",
            config.to_str().expect("utf-8 path"),
        ],
        &[],
    )
}

#[tokio::test]
async fn a_guessing_address_is_refused_and_other_offices_are_not() {
    let relay = Relay::new();
    let (_, _, token_a) = relay.office_with_user("Guessed Clinic");
    let (_, _, token_b) = relay.office_with_user("Neighbour Clinic");
    let server = throttled_server(&relay, 5, "2s");
    let guesser = client_from([127, 0, 0, 2]);
    let neighbour = client_from([127, 0, 0, 3]);
    let forged = format!("{}0", &token_a[..token_a.len() - 1]);

    for attempt in 1..=5 {
        let (status, _, code) = me(&server, &guesser, &forged).await;
        assert_eq!(
            (status, code.as_str()),
            (401, "unauthorized"),
            "attempt {attempt}"
        );
    }
    let (status, retry_after, code) = me(&server, &guesser, &forged).await;
    assert_eq!((status, code.as_str()), (429, "too_many_attempts"));
    let retry_after = retry_after.expect("Retry-After on 429");
    assert!((1..=2).contains(&retry_after), "Retry-After {retry_after}");

    // While refused, even the right token is not looked at from there…
    let (status, _, _) = me(&server, &guesser, &token_a).await;
    assert_eq!(status, 429, "the address waits, whatever it presents");
    // …and the office next door signs in as always, also after failing once.
    assert_eq!(me(&server, &neighbour, &token_b).await.0, 200);
    assert_eq!(me(&server, &neighbour, "relay_nonsense").await.0, 401);
    assert_eq!(me(&server, &neighbour, &token_b).await.0, 200);

    // Once the wait is over, one more try is allowed.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        tokio::time::sleep(Duration::from_millis(250)).await;
        match me(&server, &guesser, &token_a).await.0 {
            200 => break,
            429 if Instant::now() < deadline => continue,
            other => panic!("after Retry-After the right token answered {other}"),
        }
    }
    assert!(
        server.log().contains("too many failed authentications"),
        "the refusal is logged for the operator"
    );
    assert!(
        !server.log().contains(forged.as_str()),
        "the guessed token never reaches the log"
    );
}

#[tokio::test]
async fn the_sign_in_page_counts_failures_too() {
    let relay = Relay::new();
    let (_, _, token) = relay.office_with_user("Browser Clinic");
    let server = throttled_server(&relay, 3, "1m");
    let browser = client_from([127, 0, 0, 4]);
    let sign_in = |value: &str| {
        browser
            .post(server.url("/sign-in"))
            .header("Sec-Fetch-Site", "same-origin")
            // Tokens are letters, digits and `_`: nothing to percent-encode.
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body(format!("token={value}"))
            .send()
    };
    for _ in 0..3 {
        let response = sign_in("relay_typo").await.expect("sent");
        assert_eq!(response.status().as_u16(), 401);
    }
    let response = sign_in("relay_typo").await.expect("sent");
    assert_eq!(
        response.status().as_u16(),
        429,
        "the fourth failure spends the budget"
    );
    let response = sign_in(&token).await.expect("sent");
    assert_eq!(
        response.status().as_u16(),
        429,
        "then not even the right token is tried"
    );
    assert!(response.headers().contains_key(RETRY_AFTER));
    let page = response.text().await.expect("page");
    assert!(page.contains("Too many attempts"), "{page}");
    // The API from the same address is refused as well: one budget per address.
    let (status, _, _) = me(&server, &browser, &token).await;
    assert_eq!(status, 429);
}

#[tokio::test]
async fn requests_without_credentials_never_spend_the_budget() {
    let relay = Relay::new();
    let (_, _, token) = relay.office_with_user("Anonymous Clinic");
    let server = throttled_server(&relay, 2, "1m");
    let client = client_from([127, 0, 0, 5]);
    for _ in 0..10 {
        let status = client
            .get(server.url("/api/v1/me"))
            .send()
            .await
            .expect("sent")
            .status();
        assert_eq!(status.as_u16(), 401);
    }
    assert_eq!(me(&server, &client, &token).await.0, 200);
}
