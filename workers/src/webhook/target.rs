//! Where a webhook may be sent: an office's URL, checked so that a tenant
//! cannot aim Relay at its own network (the cloud metadata service, the
//! database, an admin port on loopback).
//!
//! Two checks, sharing one set of address rules:
//!
//! - [`WebhookTarget::parse`] when the URL is registered (and again when it is
//!   loaded for a delivery, with the policy then in force): https only, no
//!   credentials, a public domain name or a public IP literal.
//! - [`check_resolved`] (or [`WebhookTarget::check_address`]) at delivery
//!   time, on every address the host name resolves to, right before
//!   connecting: a name that was public when registered may later resolve to
//!   `10.0.0.5` (DNS rebinding).
//!
//! The URL is parsed by hand, strictly: anything a browser-style (WHATWG)
//! parser would read differently — a backslash, percent-encoding or
//! non-ASCII in the host, `127.1` or `0x7f.0.0.1` or `2130706433` for an IPv4
//! address, a trailing dot — is refused rather than interpreted, so the host
//! checked here is the host an HTTP client connects to.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The longest webhook URL accepted, in bytes.
pub const MAX_URL_LEN: usize = 2048;

/// Name suffixes that only resolve inside a private network: mDNS, the
/// ICANN private-use `.internal` (cloud metadata names such as
/// `metadata.google.internal`), RFC 8375's `home.arpa`, and names ICANN will
/// never delegate because private networks already use them.
const LOCAL_SUFFIXES: &[&str] = &[
    "internal",
    "local",
    "localdomain",
    "home.arpa",
    "lan",
    "home",
    "corp",
    "intranet",
];

/// The operator's switches for webhook targets. The default is the strict
/// policy a multi-tenant deployment needs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TargetPolicy {
    /// Accept loopback targets (`127.0.0.0/8`, `::1`, `localhost`), over
    /// plain http too: for tests and single-machine setups where the office
    /// system runs beside Relay. Every other rule still holds.
    pub allow_insecure_loopback: bool,
}

/// The scheme of a webhook target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    Https,
    /// Only ever to a loopback host, under `allow_insecure_loopback`.
    Http,
}

impl Scheme {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Https => "https",
            Self::Http => "http",
        }
    }

    pub fn default_port(self) -> u16 {
        match self {
            Self::Https => 443,
            Self::Http => 80,
        }
    }
}

/// The host of a webhook target: a lower-case domain name, or an address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetHost {
    Domain(String),
    Ip(IpAddr),
}

impl fmt::Display for TargetHost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Domain(name) => f.write_str(name),
            Self::Ip(IpAddr::V4(v4)) => write!(f, "{v4}"),
            Self::Ip(IpAddr::V6(v6)) => write!(f, "[{v6}]"),
        }
    }
}

/// Why an address may not be a webhook target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddressKind {
    /// `0.0.0.0/8`, `::`: on many systems a connection to it reaches the
    /// machine itself.
    Unspecified,
    /// `127.0.0.0/8`, `::1`; accepted only under `allow_insecure_loopback`.
    Loopback,
    /// `10/8`, `172.16/12`, `192.168/16`, `fc00::/7`, `fec0::/10`.
    Private,
    /// `169.254/16` (the cloud metadata service), `fe80::/10`.
    LinkLocal,
    /// `100.64/10`, carrier-grade NAT space, also used inside clouds.
    SharedAddressSpace,
    /// `224/4`, `ff00::/8`.
    Multicast,
    /// `255.255.255.255`.
    Broadcast,
    /// Other special-purpose ranges that are no public host: `192.0.0/24`,
    /// `198.18/15`, `240/4`, IPv4-compatible `::/96`, `100::/64`,
    /// `2001::/23`, `64:ff9b:1::/48`, and loopback reached through NAT64 or
    /// 6to4.
    Reserved,
}

impl fmt::Display for AddressKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Unspecified => "unspecified",
            Self::Loopback => "loopback",
            Self::Private => "private",
            Self::LinkLocal => "link-local",
            Self::SharedAddressSpace => "shared (carrier-grade nat)",
            Self::Multicast => "multicast",
            Self::Broadcast => "broadcast",
            Self::Reserved => "reserved",
        })
    }
}

/// Why a webhook URL (or the address it resolved to) was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    #[error("the webhook url is {0} bytes long, over the {MAX_URL_LEN} allowed; use a shorter url")]
    TooLong(usize),
    #[error(
        "the webhook url may hold only printable ascii, without spaces or backslashes; \
         percent-encode other characters in the path and write a domain name in its xn-- form"
    )]
    Character,
    #[error("the webhook url must start with https://")]
    Scheme,
    #[error(
        "the webhook url must use https; plain http is accepted only to a loopback host \
         when the operator allows insecure loopback"
    )]
    Insecure,
    #[error("the webhook url must not carry a user name or password; remove the part before @")]
    UserInfo,
    #[error("the webhook url names no host; write it as https://<host>/<path>")]
    MissingHost,
    #[error("the webhook url's port must be a number from 1 to 65535")]
    Port,
    #[error("the webhook url must not end in a #fragment; remove it")]
    Fragment,
    #[error(
        "the webhook url's host {0:?} is neither a domain name (letters, digits, hyphens, \
         dots, no trailing dot) nor an ip address; correct the host"
    )]
    InvalidHost(String),
    #[error(
        "the webhook url's host {0:?} looks like an abbreviated or non-decimal ipv4 address; \
         write the address as four decimal numbers, like 203.0.113.7"
    )]
    NumericHost(String),
    #[error(
        "the webhook url's host {0:?} is not a fully qualified domain name; use the office \
         system's public domain name"
    )]
    SingleLabel(String),
    #[error(
        "the webhook url's host {0:?} names a local or internal network, which webhooks may \
         not reach; use the office system's public domain name"
    )]
    LocalName(String),
    #[error(
        "{addr} is a {kind} address, which webhooks may not reach; use a public address or \
         the office system's public domain name"
    )]
    Address { addr: IpAddr, kind: AddressKind },
}

/// A webhook URL that passed every rule of [`TargetPolicy`]. Its text is
/// normalised: lower-case scheme and host, no default port, a path of at
/// least `/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookTarget {
    url: String,
    scheme: Scheme,
    host: TargetHost,
    port: u16,
    path_and_query: String,
}

impl WebhookTarget {
    /// Checks an office's webhook URL against the rules and `policy`.
    pub fn parse(url: &str, policy: TargetPolicy) -> Result<Self, TargetError> {
        if url.len() > MAX_URL_LEN {
            return Err(TargetError::TooLong(url.len()));
        }
        if !url.bytes().all(|b| b.is_ascii_graphic() && b != b'\\') {
            return Err(TargetError::Character);
        }
        let (scheme, rest) = url.split_once("://").ok_or(TargetError::Scheme)?;
        let scheme = if scheme.eq_ignore_ascii_case("https") {
            Scheme::Https
        } else if scheme.eq_ignore_ascii_case("http") {
            Scheme::Http
        } else {
            return Err(TargetError::Scheme);
        };

        let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let (authority, tail) = rest.split_at(authority_end);
        if tail.contains('#') {
            return Err(TargetError::Fragment);
        }
        if authority.contains('@') {
            return Err(TargetError::UserInfo);
        }
        let (host, port) = split_host_port(authority)?;
        let port = match port {
            None => scheme.default_port(),
            Some(text) => parse_port(text)?,
        };

        let loopback = match &host {
            TargetHost::Ip(ip) => {
                check_resolved(*ip, policy)?;
                is_loopback(*ip)
            }
            TargetHost::Domain(name) => check_name(name, policy)?,
        };
        if scheme == Scheme::Http && !(loopback && policy.allow_insecure_loopback) {
            return Err(TargetError::Insecure);
        }

        let path_and_query = if tail.starts_with('/') {
            tail.to_owned()
        } else {
            format!("/{tail}")
        };
        let mut normalised = format!("{}://{host}", scheme.as_str());
        if port != scheme.default_port() {
            normalised.push_str(&format!(":{port}"));
        }
        normalised.push_str(&path_and_query);

        Ok(Self {
            url: normalised,
            scheme,
            host,
            port,
            path_and_query,
        })
    }

    /// The normalised URL, what a delivery requests.
    pub fn as_str(&self) -> &str {
        &self.url
    }

    pub fn scheme(&self) -> Scheme {
        self.scheme
    }

    pub fn host(&self) -> &TargetHost {
        &self.host
    }

    /// The port connected to: the explicit one, or the scheme's default.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The path, with the query if any; at least `/`.
    pub fn path_and_query(&self) -> &str {
        &self.path_and_query
    }

    /// [`check_resolved`] for this target: also refuses a plain-http target
    /// whose name resolved to anything but loopback, so an `http://localhost`
    /// never sends a report notice across a network in clear text.
    pub fn check_address(&self, addr: IpAddr, policy: TargetPolicy) -> Result<(), TargetError> {
        check_resolved(addr, policy)?;
        if self.scheme == Scheme::Http && !is_loopback(addr) {
            return Err(TargetError::Insecure);
        }
        Ok(())
    }
}

impl fmt::Display for WebhookTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.url)
    }
}

/// Checks an address a webhook host resolved to, right before connecting:
/// the same address rules as an IP literal in the URL, so a name cannot be
/// re-pointed at an internal address after it was registered.
pub fn check_resolved(addr: IpAddr, policy: TargetPolicy) -> Result<(), TargetError> {
    match classify(addr) {
        None => Ok(()),
        Some(AddressKind::Loopback) if policy.allow_insecure_loopback => Ok(()),
        Some(kind) => Err(TargetError::Address { addr, kind }),
    }
}

fn is_loopback(addr: IpAddr) -> bool {
    classify(addr) == Some(AddressKind::Loopback)
}

/// Splits `host[:port]` or `[v6][:port]`; the port text is returned unread.
fn split_host_port(authority: &str) -> Result<(TargetHost, Option<&str>), TargetError> {
    if authority.is_empty() {
        return Err(TargetError::MissingHost);
    }
    if let Some(bracketed) = authority.strip_prefix('[') {
        let invalid = || TargetError::InvalidHost(authority.to_owned());
        let (inside, after) = bracketed.split_once(']').ok_or_else(invalid)?;
        let v6: Ipv6Addr = inside.parse().map_err(|_| invalid())?;
        let port = match after {
            "" => None,
            _ => Some(after.strip_prefix(':').ok_or_else(invalid)?),
        };
        return Ok((TargetHost::Ip(IpAddr::V6(v6)), port));
    }
    let (host, port) = match authority.rsplit_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (authority, None),
    };
    if host.is_empty() {
        return Err(TargetError::MissingHost);
    }
    Ok((parse_host(host)?, port))
}

fn parse_port(text: &str) -> Result<u16, TargetError> {
    if text.is_empty() || text.len() > 5 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(TargetError::Port);
    }
    match text.parse::<u16>() {
        Ok(port) if port != 0 => Ok(port),
        _ => Err(TargetError::Port),
    }
}

/// A host outside brackets: a dotted-decimal IPv4 address or a domain name.
fn parse_host(text: &str) -> Result<TargetHost, TargetError> {
    let host = text.to_ascii_lowercase();
    if ends_in_a_number(&host) {
        // A WHATWG parser reads any host ending in a number as IPv4, in
        // decimal, octal or hex, with 1 to 4 parts; accept only the one
        // spelling everybody agrees on.
        return match host.parse::<Ipv4Addr>() {
            Ok(v4) => Ok(TargetHost::Ip(IpAddr::V4(v4))),
            Err(_) => Err(TargetError::NumericHost(text.to_owned())),
        };
    }
    let valid_label = |label: &str| {
        (1..=63).contains(&label.len())
            && label
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !label.starts_with('-')
            && !label.ends_with('-')
    };
    if host.len() > 253 || !host.split('.').all(valid_label) {
        return Err(TargetError::InvalidHost(text.to_owned()));
    }
    Ok(TargetHost::Domain(host))
}

/// The WHATWG URL standard's "ends in a number": the last label (ignoring
/// one trailing dot) is all decimal digits, or `0x` followed by hex digits.
fn ends_in_a_number(host: &str) -> bool {
    let trimmed = host.strip_suffix('.').unwrap_or(host);
    let last = trimmed.rsplit('.').next().unwrap_or(trimmed);
    if !last.is_empty() && last.bytes().all(|b| b.is_ascii_digit()) {
        return true;
    }
    last.strip_prefix("0x")
        .is_some_and(|hex| hex.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// Applies the name rules; `Ok(true)` for a loopback name the policy allows.
fn check_name(name: &str, policy: TargetPolicy) -> Result<bool, TargetError> {
    let under = |suffix: &str| {
        name == suffix
            || name
                .strip_suffix(suffix)
                .is_some_and(|rest| rest.ends_with('.'))
    };
    if under("localhost") {
        return if policy.allow_insecure_loopback {
            Ok(true)
        } else {
            Err(TargetError::LocalName(name.to_owned()))
        };
    }
    if LOCAL_SUFFIXES.iter().any(|suffix| under(suffix)) {
        return Err(TargetError::LocalName(name.to_owned()));
    }
    if !name.contains('.') {
        return Err(TargetError::SingleLabel(name.to_owned()));
    }
    Ok(false)
}

/// The special-purpose range an address is in, or `None` for a public one.
fn classify(addr: IpAddr) -> Option<AddressKind> {
    match addr {
        IpAddr::V4(v4) => classify_v4(v4),
        IpAddr::V6(v6) => classify_v6(v6),
    }
}

fn classify_v4(v4: Ipv4Addr) -> Option<AddressKind> {
    let [a, b, c, _] = v4.octets();
    Some(match (a, b, c) {
        (0, _, _) => AddressKind::Unspecified,
        (10, _, _) => AddressKind::Private,
        (100, 64..=127, _) => AddressKind::SharedAddressSpace,
        (127, _, _) => AddressKind::Loopback,
        (169, 254, _) => AddressKind::LinkLocal,
        (172, 16..=31, _) => AddressKind::Private,
        (192, 0, 0) => AddressKind::Reserved,
        (192, 168, _) => AddressKind::Private,
        (198, 18..=19, _) => AddressKind::Reserved,
        (224..=239, _, _) => AddressKind::Multicast,
        _ if v4 == Ipv4Addr::BROADCAST => AddressKind::Broadcast,
        (240..=255, _, _) => AddressKind::Reserved,
        _ => return None,
    })
}

fn classify_v6(v6: Ipv6Addr) -> Option<AddressKind> {
    // `::ffff:a.b.c.d` is the IPv4 address itself on a dual-stack socket.
    if let Some(v4) = v6.to_ipv4_mapped() {
        return classify_v4(v4);
    }
    let s = v6.segments();
    let embedded = |hi: u16, lo: u16| {
        let [a, b] = hi.to_be_bytes();
        let [c, d] = lo.to_be_bytes();
        Ipv4Addr::new(a, b, c, d)
    };
    // An IPv4 address reached through a translator: its range, except that
    // loopback there is the translator's, never an allowed target.
    let translated = |v4: Ipv4Addr| {
        classify_v4(v4).map(|kind| match kind {
            AddressKind::Loopback => AddressKind::Reserved,
            other => other,
        })
    };
    if v6.is_unspecified() {
        return Some(AddressKind::Unspecified);
    }
    if v6.is_loopback() {
        return Some(AddressKind::Loopback);
    }
    match s {
        // IPv4-compatible (deprecated).
        [0, 0, 0, 0, 0, 0, _, _] => Some(AddressKind::Reserved),
        // NAT64, well-known prefix.
        [0x64, 0xff9b, 0, 0, 0, 0, hi, lo] => translated(embedded(hi, lo)),
        // NAT64, local-use prefix.
        [0x64, 0xff9b, 1, ..] => Some(AddressKind::Reserved),
        // Discard-only.
        [0x100, 0, 0, 0, ..] => Some(AddressKind::Reserved),
        // IETF protocol assignments, Teredo among them.
        [0x2001, 0x0000..=0x01ff, ..] => Some(AddressKind::Reserved),
        // 6to4.
        [0x2002, hi, lo, ..] => translated(embedded(hi, lo)),
        [first, ..] if first & 0xfe00 == 0xfc00 => Some(AddressKind::Private),
        [first, ..] if first & 0xffc0 == 0xfe80 => Some(AddressKind::LinkLocal),
        [first, ..] if first & 0xffc0 == 0xfec0 => Some(AddressKind::Private),
        [first, ..] if first & 0xff00 == 0xff00 => Some(AddressKind::Multicast),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STRICT: TargetPolicy = TargetPolicy {
        allow_insecure_loopback: false,
    };
    const LOOPBACK: TargetPolicy = TargetPolicy {
        allow_insecure_loopback: true,
    };

    fn refused(url: &str, policy: TargetPolicy) -> TargetError {
        match WebhookTarget::parse(url, policy) {
            Ok(target) => panic!("{url} was accepted as {target}"),
            Err(e) => e,
        }
    }

    fn refused_kind(url: &str, policy: TargetPolicy) -> AddressKind {
        match refused(url, policy) {
            TargetError::Address { kind, .. } => kind,
            other => panic!("{url}: expected an address refusal, got {other:?}"),
        }
    }

    #[test]
    fn public_https_targets_are_accepted() {
        let t = WebhookTarget::parse("https://clinic.example.org/hooks/relay", STRICT)
            .expect("accepted");
        assert_eq!(t.as_str(), "https://clinic.example.org/hooks/relay");
        assert_eq!(t.scheme(), Scheme::Https);
        assert_eq!(t.host(), &TargetHost::Domain("clinic.example.org".into()));
        assert_eq!(t.port(), 443);
        assert_eq!(t.path_and_query(), "/hooks/relay");

        let t = WebhookTarget::parse("https://203.0.113.7:8443/x", STRICT).expect("accepted");
        assert_eq!(t.as_str(), "https://203.0.113.7:8443/x");
        assert_eq!(
            t.host(),
            &TargetHost::Ip("203.0.113.7".parse().expect("ip"))
        );
        assert_eq!(t.port(), 8443);

        let t = WebhookTarget::parse("https://[2001:db8::1]:8443/x?a=1", STRICT).expect("v6");
        assert_eq!(t.as_str(), "https://[2001:db8::1]:8443/x?a=1");
        assert_eq!(t.path_and_query(), "/x?a=1");
    }

    #[test]
    fn urls_are_normalised() {
        for (given, normal) in [
            (
                "HTTPS://Clinic.Example.ORG/Hooks",
                "https://clinic.example.org/Hooks",
            ),
            ("https://clinic.example.org", "https://clinic.example.org/"),
            (
                "https://clinic.example.org:443/a",
                "https://clinic.example.org/a",
            ),
            (
                "https://clinic.example.org?x=1",
                "https://clinic.example.org/?x=1",
            ),
            (
                "https://clinic.example.org:08443/",
                "https://clinic.example.org:8443/",
            ),
            ("https://[2001:DB8:0::1]/", "https://[2001:db8::1]/"),
            (
                "https://xn--bcher-kva.example/",
                "https://xn--bcher-kva.example/",
            ),
        ] {
            let t = WebhookTarget::parse(given, STRICT).expect(given);
            assert_eq!(t.as_str(), normal);
            assert_eq!(t.to_string(), normal);
        }
    }

    #[test]
    fn only_https_is_accepted() {
        assert_eq!(
            refused("http://clinic.example.org/hook", STRICT),
            TargetError::Insecure
        );
        assert_eq!(
            refused("http://clinic.example.org/hook", LOOPBACK),
            TargetError::Insecure
        );
        assert_eq!(
            refused("http://203.0.113.7/", LOOPBACK),
            TargetError::Insecure
        );
        for url in [
            "ftp://clinic.example.org/",
            "file:///etc/passwd",
            "gopher://clinic.example.org/",
            "ws://clinic.example.org/",
            "javascript:alert(1)",
            "clinic.example.org/hook",
            "https:/clinic.example.org/",
            "https:clinic.example.org",
            "//clinic.example.org/",
            "",
        ] {
            assert_eq!(refused(url, STRICT), TargetError::Scheme, "{url}");
        }
    }

    #[test]
    fn loopback_http_needs_the_policy() {
        let url = "http://127.0.0.1:9000/hook";
        assert_eq!(refused_kind(url, STRICT), AddressKind::Loopback);
        let t = WebhookTarget::parse(url, LOOPBACK).expect("allowed");
        assert_eq!(t.as_str(), url);
        assert_eq!(t.scheme(), Scheme::Http);
        assert_eq!(t.port(), 9000);

        for url in [
            "http://localhost:9000/hook",
            "http://relay.localhost/hook",
            "http://[::1]:9000/hook",
            "http://[::ffff:127.0.0.1]:9000/hook",
            "https://localhost/hook",
            "http://127.8.9.10/",
        ] {
            assert!(WebhookTarget::parse(url, LOOPBACK).is_ok(), "{url}");
            assert!(WebhookTarget::parse(url, STRICT).is_err(), "{url}");
        }
        assert_eq!(
            refused("http://LocalHost/", STRICT),
            TargetError::LocalName("localhost".into())
        );
    }

    #[test]
    fn the_policy_opens_nothing_but_loopback() {
        for url in [
            "http://10.0.0.1/",
            "https://10.0.0.1/",
            "https://169.254.169.254/latest/meta-data/",
            "https://0.0.0.0/",
            "https://[::]/",
            "https://[fe80::1]/",
            "https://[64:ff9b::127.0.0.1]/",
            "https://metadata.google.internal/",
        ] {
            assert!(WebhookTarget::parse(url, LOOPBACK).is_err(), "{url}");
        }
    }

    #[test]
    fn private_and_special_ipv4_ranges_are_refused() {
        use AddressKind::*;
        for (host, kind) in [
            ("127.0.0.1", Loopback),
            ("127.255.255.254", Loopback),
            ("10.0.0.1", Private),
            ("10.255.255.255", Private),
            ("172.16.0.1", Private),
            ("172.31.255.255", Private),
            ("192.168.1.1", Private),
            ("169.254.0.1", LinkLocal),
            ("169.254.169.254", LinkLocal),
            ("0.0.0.0", Unspecified),
            ("0.1.2.3", Unspecified),
            ("224.0.0.1", Multicast),
            ("239.255.255.250", Multicast),
            ("255.255.255.255", Broadcast),
            ("240.0.0.1", Reserved),
            ("100.64.0.1", SharedAddressSpace),
            ("100.100.100.200", SharedAddressSpace),
            ("100.127.255.255", SharedAddressSpace),
            ("192.0.0.170", Reserved),
            ("198.18.0.1", Reserved),
        ] {
            assert_eq!(
                refused_kind(&format!("https://{host}/"), STRICT),
                kind,
                "{host}"
            );
        }
    }

    #[test]
    fn neighbours_of_the_ranges_are_public() {
        for host in [
            "9.255.255.255",
            "11.0.0.1",
            "172.15.255.255",
            "172.32.0.1",
            "192.167.255.255",
            "192.169.0.1",
            "169.253.255.255",
            "169.255.0.1",
            "100.63.255.255",
            "100.128.0.1",
            "126.255.255.255",
            "128.0.0.1",
            "1.0.0.1",
            "223.255.255.255",
            "198.17.255.255",
            "198.20.0.1",
            "192.0.1.1",
        ] {
            assert!(
                WebhookTarget::parse(&format!("https://{host}/"), STRICT).is_ok(),
                "{host}"
            );
        }
    }

    #[test]
    fn private_and_special_ipv6_ranges_are_refused() {
        use AddressKind::*;
        for (host, kind) in [
            ("::1", Loopback),
            ("::", Unspecified),
            ("fc00::1", Private),
            ("fd12:3456:789a::1", Private),
            ("fe80::1", LinkLocal),
            ("febf::1", LinkLocal),
            ("fec0::1", Private),
            ("ff02::1", Multicast),
            ("::ffff:127.0.0.1", Loopback),
            ("::ffff:7f00:1", Loopback),
            ("::ffff:10.0.0.1", Private),
            ("::ffff:172.16.0.1", Private),
            ("::ffff:192.168.0.1", Private),
            ("::ffff:169.254.169.254", LinkLocal),
            ("::ffff:0.0.0.0", Unspecified),
            ("::ffff:100.64.0.1", SharedAddressSpace),
            ("::ffff:224.0.0.1", Multicast),
            ("::ffff:255.255.255.255", Broadcast),
            ("::127.0.0.1", Reserved),
            ("64:ff9b::10.0.0.1", Private),
            ("64:ff9b::169.254.169.254", LinkLocal),
            ("64:ff9b::127.0.0.1", Reserved),
            ("64:ff9b:1::1", Reserved),
            ("100::1", Reserved),
            ("2001::1", Reserved),
            ("2002:a00:1::1", Private),
            ("2002:7f00:1::1", Reserved),
        ] {
            assert_eq!(
                refused_kind(&format!("https://[{host}]/"), STRICT),
                kind,
                "{host}"
            );
        }
        for host in [
            "2001:db8::1",
            "2606:4700::1111",
            "::ffff:203.0.113.7",
            "64:ff9b::203.0.113.7",
            "2002:cb00:7107::1",
            "2001:200::1",
        ] {
            assert!(
                WebhookTarget::parse(&format!("https://[{host}]/"), STRICT).is_ok(),
                "{host}"
            );
        }
    }

    #[test]
    fn local_names_are_refused() {
        for host in [
            "localhost",
            "relay.localhost",
            "metadata.google.internal",
            "db.internal",
            "printer.local",
            "nas.home.arpa",
            "box.localdomain",
            "router.lan",
            "dc.corp",
        ] {
            assert_eq!(
                refused(&format!("https://{host}/"), STRICT),
                TargetError::LocalName(host.into()),
                "{host}"
            );
        }
        // Only whole labels count.
        for host in [
            "notlocalhost.example",
            "internal.example.org",
            "mylocal.example",
        ] {
            assert!(
                WebhookTarget::parse(&format!("https://{host}/"), STRICT).is_ok(),
                "{host}"
            );
        }
        assert_eq!(
            refused("https://intranetbox/", STRICT),
            TargetError::SingleLabel("intranetbox".into())
        );
        assert_eq!(
            refused("https://localhost.internal/", LOOPBACK),
            TargetError::LocalName("localhost.internal".into())
        );
    }

    #[test]
    fn ambiguous_ipv4_spellings_are_refused() {
        for host in [
            "2130706433",
            "127.1",
            "0x7f.0.0.1",
            "0x7f000001",
            "0177.0.0.1",
            "127.000.000.001",
            "127.0.0.1.",
            "clinic.example.0x10",
            "1.2.3.4.5",
            "203.0.113.256",
        ] {
            assert_eq!(
                refused(&format!("https://{host}/"), LOOPBACK),
                TargetError::NumericHost(host.into()),
                "{host}"
            );
        }
    }

    #[test]
    fn userinfo_is_refused() {
        for url in [
            "https://user:pass@clinic.example.org/",
            "https://user@clinic.example.org/",
            "https://@clinic.example.org/",
            "https://clinic.example.org:443@127.0.0.1/",
            "https://clinic.example.org@169.254.169.254/",
        ] {
            assert_eq!(refused(url, STRICT), TargetError::UserInfo, "{url}");
        }
        // An @ after the host is part of the path or query, not userinfo.
        assert!(WebhookTarget::parse("https://clinic.example.org/a@b?c=@d", STRICT).is_ok());
    }

    #[test]
    fn a_host_is_required() {
        for url in ["https://", "https:///hook", "https://?x", "https://:443/"] {
            assert_eq!(refused(url, STRICT), TargetError::MissingHost, "{url}");
        }
    }

    #[test]
    fn malformed_hosts_are_refused() {
        for url in [
            "https://clinic..example.org/",
            "https://.clinic.example.org/",
            "https://clinic.example.org./",
            "https://-clinic.example.org/",
            "https://clinic-.example.org/",
            "https://clinic_1.example.org/",
            "https://clinic.exa%6dple.org/",
            "https://127.0.0.%31/",
            "https://[::1/",
            "https://[::1]x/",
            "https://[fe80::1%25eth0]/",
            "https://[127.0.0.1]/",
            "https://::1/",
            "https://clinic.example.org]/",
        ] {
            assert!(
                matches!(refused(url, STRICT), TargetError::InvalidHost(_)),
                "{url}"
            );
        }
        let long_label = format!("https://{}.example.org/", "a".repeat(64));
        assert!(matches!(
            refused(&long_label, STRICT),
            TargetError::InvalidHost(_)
        ));
        let long_name = format!("https://{}example.org/", "a.".repeat(124));
        assert!(matches!(
            refused(&long_name, STRICT),
            TargetError::InvalidHost(_)
        ));
    }

    #[test]
    fn characters_a_browser_would_reinterpret_are_refused() {
        for url in [
            "https://clinic.example.org\\@127.0.0.1/",
            "https://127.0.0.1\\.clinic.example.org/",
            "https://clinic.example.org/a b",
            " https://clinic.example.org/",
            "https://clinic.example.org/\t",
            "https://clinic.example.org/\n",
            "https://bücher.example/",
            "https://１２７.0.0.1/",
        ] {
            assert_eq!(refused(url, STRICT), TargetError::Character, "{url:?}");
        }
    }

    #[test]
    fn fragments_are_refused() {
        assert_eq!(
            refused("https://clinic.example.org/hook#x", STRICT),
            TargetError::Fragment
        );
        assert_eq!(
            refused("https://127.0.0.1#@clinic.example.org/", STRICT),
            TargetError::Fragment
        );
    }

    #[test]
    fn ports_must_be_valid() {
        for url in [
            "https://clinic.example.org:/",
            "https://clinic.example.org:0/",
            "https://clinic.example.org:65536/",
            "https://clinic.example.org:99999999/",
            "https://clinic.example.org:+443/",
            "https://clinic.example.org:44a/",
            "https://[2001:db8::1]:/",
        ] {
            assert_eq!(refused(url, STRICT), TargetError::Port, "{url}");
        }
        let t = WebhookTarget::parse("https://clinic.example.org:65535/", STRICT).expect("ok");
        assert_eq!(t.port(), 65535);
    }

    #[test]
    fn length_is_bounded() {
        let base = "https://clinic.example.org/";
        let fits = format!("{base}{}", "a".repeat(MAX_URL_LEN - base.len()));
        assert!(WebhookTarget::parse(&fits, STRICT).is_ok());
        let over = format!("{fits}a");
        assert_eq!(
            refused(&over, STRICT),
            TargetError::TooLong(MAX_URL_LEN + 1)
        );
    }

    #[test]
    fn resolved_addresses_follow_the_same_rules() {
        let ip = |s: &str| s.parse::<IpAddr>().expect("ip");
        assert_eq!(check_resolved(ip("203.0.113.7"), STRICT), Ok(()));
        assert_eq!(check_resolved(ip("2606:4700::1111"), STRICT), Ok(()));
        for (addr, kind) in [
            ("10.1.2.3", AddressKind::Private),
            ("169.254.169.254", AddressKind::LinkLocal),
            ("::ffff:192.168.0.1", AddressKind::Private),
            ("fd00::1", AddressKind::Private),
            ("127.0.0.1", AddressKind::Loopback),
        ] {
            assert_eq!(
                check_resolved(ip(addr), STRICT),
                Err(TargetError::Address {
                    addr: ip(addr),
                    kind
                })
            );
        }
        assert_eq!(check_resolved(ip("127.0.0.1"), LOOPBACK), Ok(()));
        assert_eq!(check_resolved(ip("::1"), LOOPBACK), Ok(()));
        assert!(check_resolved(ip("10.1.2.3"), LOOPBACK).is_err());
    }

    #[test]
    fn plain_http_must_resolve_to_loopback() {
        let ip = |s: &str| s.parse::<IpAddr>().expect("ip");
        let http = WebhookTarget::parse("http://localhost:9000/hook", LOOPBACK).expect("ok");
        assert_eq!(http.check_address(ip("127.0.0.1"), LOOPBACK), Ok(()));
        assert_eq!(http.check_address(ip("::1"), LOOPBACK), Ok(()));
        assert_eq!(
            http.check_address(ip("203.0.113.7"), LOOPBACK),
            Err(TargetError::Insecure)
        );
        assert!(http.check_address(ip("127.0.0.1"), STRICT).is_err());

        let https = WebhookTarget::parse("https://clinic.example.org/", STRICT).expect("ok");
        assert_eq!(https.check_address(ip("203.0.113.7"), STRICT), Ok(()));
        assert!(https.check_address(ip("192.168.0.10"), STRICT).is_err());
    }

    #[test]
    fn errors_tell_the_operator_what_to_do() {
        let messages = [
            refused("http://clinic.example.org/", STRICT).to_string(),
            refused("https://10.0.0.1/", STRICT).to_string(),
            refused("https://127.1/", STRICT).to_string(),
        ];
        assert!(messages[0].contains("must use https"));
        assert!(messages[1].starts_with("10.0.0.1 is a private address"));
        assert!(messages[2].contains("four decimal numbers"));
        for m in messages {
            assert!(!m.ends_with('.'), "{m}");
            assert_eq!(
                m.chars().next(),
                m.chars().next().map(|c| c.to_ascii_lowercase())
            );
        }
    }
}
