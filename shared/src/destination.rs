//! Where the fleet may send requests a tenant chose the address of (webhooks today; the
//! compliance pre-dial check will use the same guard).
//!
//! Two checks, both done here so every caller applies the same ones:
//!
//! - **The URL is parsed**, never matched by its prefix ([`parse_http_url`]): the `url` crate
//!   parses it as reqwest will, so a URL accepted here is one the delivery client can use (an
//!   `http://[`, a control character, another scheme or a missing host is refused at creation,
//!   not retried for a day).
//! - **The destination is a public address**, unless the operator allowed its network
//!   ([`AllowedNetworks`], `WEBHOOK_ALLOWED_NETWORKS`): loopback, private, link-local,
//!   carrier-grade NAT, multicast, unspecified, documentation and other reserved addresses of
//!   both families ([`is_special_purpose`]) are refused, an IPv4-mapped IPv6 address judged as
//!   the IPv4 address it carries. The check is made on the address actually connected to:
//!   [`guarded_client`] resolves names through [`GuardedResolver`], which drops forbidden
//!   addresses from every answer, so a name that resolved to a public address when the webhook
//!   was created and to `127.0.0.1` at delivery (DNS rebinding) is still refused. A literal IP
//!   is never resolved, so [`AllowedNetworks::check_url`] judges it before sending. Redirects
//!   are not followed (a public receiver could otherwise bounce the request inside), and no
//!   proxy from the environment is used (it would resolve the name itself).
//!
//! The model is svix's `whitelist_subnets`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::str::FromStr;
use std::sync::Arc;

use ipnet::IpNet;
pub use url::Url;

/// Why a URL cannot be used. The messages are written to follow a field name in a 422.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    /// Whitespace or a control character: the parser would silently drop or escape it.
    #[error("must not contain spaces or control characters")]
    ControlCharacter,
    /// Not a URL at all (`http://[`, a relative path, …).
    #[error("must be an absolute http(s) URL ({0})")]
    Malformed(String),
    /// Another scheme than http or https.
    #[error("must be an http(s) URL, not {0}:")]
    Scheme(String),
    /// No host to connect to.
    #[error("must name a host")]
    NoHost,
}

/// Parses `s` as an absolute http(s) URL with a host: what the fleet's HTTP client can send
/// to. Refuses whitespace and control characters anywhere, which a WHATWG parser would
/// otherwise strip or percent-encode, so the URL stored is exactly the one given.
pub fn parse_http_url(s: &str) -> Result<Url, UrlError> {
    if s.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(UrlError::ControlCharacter);
    }
    let url = Url::parse(s).map_err(|e| UrlError::Malformed(e.to_string()))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(UrlError::Scheme(url.scheme().to_owned()));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(UrlError::NoHost);
    }
    Ok(url)
}

/// A destination refused: the address is special-purpose and outside the allowed networks.
/// Its message starts with `blocked_destination`, the word the delivery log shows.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "blocked_destination: {host} is {ip}, a private or reserved address outside WEBHOOK_ALLOWED_NETWORKS"
)]
pub struct Blocked {
    /// The host as the URL names it.
    pub host: String,
    /// The address refused (the first one, when a name resolved to several).
    pub ip: IpAddr,
}

/// The prefix of [`Blocked`]'s message.
pub const BLOCKED_DESTINATION: &str = "blocked_destination";

/// The operator's exceptions to [`is_special_purpose`] (`WEBHOOK_ALLOWED_NETWORKS`: CIDRs or
/// bare addresses, separated by commas or spaces; empty by default). Write IPv4 networks in
/// IPv4 form: an IPv4-mapped IPv6 address is judged as its IPv4 address.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllowedNetworks(Vec<IpNet>);

/// A `WEBHOOK_ALLOWED_NETWORKS` entry that is not a CIDR or an address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a CIDR network (e.g. 127.0.0.1/32, 10.0.0.0/8, fd00::/8)")]
pub struct BadNetwork(pub String);

impl FromStr for AllowedNetworks {
    type Err = BadNetwork;

    fn from_str(s: &str) -> Result<Self, BadNetwork> {
        s.split([',', ' ', '\t', '\n'])
            .filter(|part| !part.is_empty())
            .map(|part| {
                part.parse::<IpNet>()
                    .or_else(|_| part.parse::<IpAddr>().map(IpNet::from))
                    .map(|n| n.trunc())
                    .map_err(|_| BadNetwork(part.to_owned()))
            })
            .collect::<Result<_, _>>()
            .map(Self)
    }
}

impl std::fmt::Display for AllowedNetworks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let parts: Vec<String> = self.0.iter().map(ToString::to_string).collect();
        f.write_str(&parts.join(","))
    }
}

impl AllowedNetworks {
    /// No exception: only public addresses.
    pub fn none() -> Self {
        Self::default()
    }

    /// The networks, as given (truncated to their prefix).
    pub fn networks(&self) -> &[IpNet] {
        &self.0
    }

    /// Whether a request may be sent to `ip`: a public address, or one inside an allowed
    /// network. The one rule every outbound check of a tenant's address goes through.
    pub fn permits(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        !is_special_purpose(ip) || self.0.iter().any(|n| n.contains(&ip))
    }

    /// Checks a URL whose host is a literal address (which is connected to without any
    /// lookup, so [`GuardedResolver`] never sees it). A host name passes: its addresses are
    /// checked when it is resolved.
    pub fn check_url(&self, url: &Url) -> Result<(), Blocked> {
        let ip = match url.host() {
            Some(url::Host::Ipv4(ip)) => IpAddr::V4(ip),
            Some(url::Host::Ipv6(ip)) => IpAddr::V6(ip),
            _ => return Ok(()),
        };
        if self.permits(ip) {
            Ok(())
        } else {
            Err(Blocked {
                host: url.host_str().unwrap_or_default().to_owned(),
                ip,
            })
        }
    }
}

/// An IPv4-mapped IPv6 address (`::ffff:a.b.c.d`) as the IPv4 address it reaches; any other
/// address as it is.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    }
}

/// Whether `ip` is anything but a public unicast address: loopback, private (RFC 1918, IPv6
/// unique local), link-local, carrier-grade NAT (100.64.0.0/10), multicast, unspecified,
/// broadcast, documentation, benchmarking, IETF protocol assignments, 6to4 / NAT64 / Teredo
/// prefixes (which embed an IPv4 address that could be any of these) and the reserved
/// 240.0.0.0/4. IPv4-mapped IPv6 addresses are judged as their IPv4 address.
pub fn is_special_purpose(ip: IpAddr) -> bool {
    match canonical(ip) {
        IpAddr::V4(v4) => special_v4(v4),
        IpAddr::V6(v6) => special_v6(v6),
    }
}

fn special_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    a == 0 // "this network", 0.0.0.0 included
        || a == 10
        || a == 127
        || (a == 100 && (64..128).contains(&b)) // carrier-grade NAT
        || (a == 169 && b == 254) // link-local, cloud metadata
        || (a == 172 && (16..32).contains(&b))
        || (a == 192 && b == 0 && c == 0) // IETF protocol assignments
        || (a == 192 && b == 0 && c == 2) // TEST-NET-1
        || (a == 192 && b == 88 && c == 99) // 6to4 relay anycast
        || (a == 192 && b == 168)
        || (a == 198 && (b == 18 || b == 19)) // benchmarking
        || (a == 198 && b == 51 && c == 100) // TEST-NET-2
        || (a == 203 && b == 0 && c == 113) // TEST-NET-3
        || a >= 224 // multicast, reserved, broadcast
}

fn special_v6(ip: Ipv6Addr) -> bool {
    let s = ip.segments();
    s[..6] == [0; 6] // unspecified, loopback, IPv4-compatible (deprecated)
        || (s[0] == 0x64 && s[1] == 0xff9b) // NAT64, well-known and local-use
        || (s[0] == 0x100 && s[1..4] == [0; 3]) // discard-only
        || (s[0] == 0x2001 && s[1] < 0x200) // IETF protocol assignments, Teredo
        || (s[0] == 0x2001 && s[1] == 0xdb8) // documentation
        || s[0] == 0x2002 // 6to4
        || (s[0] == 0x3fff && s[1] < 0x1000) // documentation (3fff::/20)
        || (s[0] & 0xfe00) == 0xfc00 // unique local
        || (s[0] & 0xffc0) == 0xfe80 // link-local
        || (s[0] & 0xffc0) == 0xfec0 // site-local (deprecated)
        || (s[0] & 0xff00) == 0xff00 // multicast
}

/// A reqwest resolver that resolves with the system's resolver and drops every address
/// [`AllowedNetworks::permits`] refuses; a name left with none fails with [`Blocked`].
#[derive(Debug, Clone)]
pub struct GuardedResolver {
    allowed: Arc<AllowedNetworks>,
}

impl GuardedResolver {
    /// A resolver allowing `allowed` besides public addresses.
    pub fn new(allowed: Arc<AllowedNetworks>) -> Self {
        Self { allowed }
    }

    /// The addresses of `host` a request may connect to, or [`Blocked`] (or the lookup's
    /// error) when there are none.
    pub async fn resolve_host(
        &self,
        host: &str,
    ) -> Result<Vec<SocketAddr>, Box<dyn std::error::Error + Send + Sync>> {
        let found: Vec<SocketAddr> = tokio::net::lookup_host((host, 0)).await?.collect();
        let (permitted, refused): (Vec<SocketAddr>, Vec<SocketAddr>) = found
            .into_iter()
            .partition(|a| self.allowed.permits(a.ip()));
        match (permitted.is_empty(), refused.first()) {
            (true, Some(first)) => Err(Box::new(Blocked {
                host: host.to_owned(),
                ip: first.ip(),
            })),
            (true, None) => Err(format!("{host} has no address").into()),
            (false, _) => Ok(permitted),
        }
    }
}

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let this = self.clone();
        Box::pin(async move {
            let addrs = this.resolve_host(name.as_str()).await?;
            Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// `builder` made safe for tenant-chosen destinations: names resolved through
/// [`GuardedResolver`], redirects not followed, no proxy. Literal-IP URLs must still be checked
/// with [`AllowedNetworks::check_url`] before sending.
pub fn guarded_client(
    builder: reqwest::ClientBuilder,
    allowed: Arc<AllowedNetworks>,
) -> reqwest::ClientBuilder {
    builder
        .dns_resolver(Arc::new(GuardedResolver::new(allowed)))
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
}

/// The [`Blocked`] somewhere in `err`'s chain of sources (a reqwest error wraps the
/// resolver's), if any.
pub fn blocked_in<'a>(err: &'a (dyn std::error::Error + 'static)) -> Option<&'a Blocked> {
    let mut current = Some(err);
    while let Some(e) = current {
        if let Some(blocked) = e.downcast_ref::<Blocked>() {
            return Some(blocked);
        }
        current = e.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn urls_are_parsed_not_prefix_matched() {
        assert!(parse_http_url("https://api.example.com/hook?x=1").is_ok());
        assert!(parse_http_url("http://127.0.0.1:8080/h").is_ok());
        assert!(parse_http_url("http://[::1]:9/h").is_ok());
        assert!(matches!(
            parse_http_url("http://["),
            Err(UrlError::Malformed(_))
        ));
        assert_eq!(
            parse_http_url("https://\u{1}x\"]<>\u{9d}"),
            Err(UrlError::ControlCharacter)
        );
        assert_eq!(
            parse_http_url("https://x.example/a b"),
            Err(UrlError::ControlCharacter)
        );
        assert_eq!(
            parse_http_url("ftp://x.example/"),
            Err(UrlError::Scheme("ftp".into()))
        );
        assert_eq!(
            parse_http_url("mailto:x@example.com"),
            Err(UrlError::Scheme("mailto".into()))
        );
        assert!(parse_http_url("https://").is_err());
        assert!(parse_http_url("/relative").is_err());
        assert!(parse_http_url("http://exa mple.com").is_err());
    }

    #[test]
    fn special_purpose_addresses_of_both_families() {
        for s in [
            "0.0.0.0",
            "10.1.2.3",
            "100.64.0.1",
            "100.127.255.255",
            "127.0.0.1",
            "127.0.0.2",
            "169.254.169.254",
            "172.16.0.1",
            "172.31.255.255",
            "192.0.0.8",
            "192.0.2.1",
            "192.168.1.1",
            "198.18.0.1",
            "198.51.100.7",
            "203.0.113.9",
            "224.0.0.1",
            "240.0.0.1",
            "255.255.255.255",
            "::",
            "::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "::ffff:169.254.169.254",
            "64:ff9b::7f00:1",
            "100::1",
            "2001::1",
            "2001:db8::1",
            "2002:7f00:1::",
            "3fff::1",
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "fec0::1",
            "ff02::1",
        ] {
            assert!(is_special_purpose(ip(s)), "{s}");
        }
        for s in [
            "1.1.1.1",
            "8.8.8.8",
            "100.63.255.255",
            "100.128.0.0",
            "172.15.0.1",
            "172.32.0.1",
            "192.169.0.1",
            "2606:4700::1111",
            "2a00:1450::1",
            "::ffff:8.8.8.8",
        ] {
            assert!(!is_special_purpose(ip(s)), "{s}");
        }
    }

    #[test]
    fn the_allow_list_makes_exceptions_exactly() {
        let allowed: AllowedNetworks = "127.0.0.1/32".parse().unwrap();
        assert!(allowed.permits(ip("127.0.0.1")));
        assert!(allowed.permits(ip("::ffff:127.0.0.1")), "mapped form");
        assert!(!allowed.permits(ip("127.0.0.2")));
        assert!(!allowed.permits(ip("::1")));
        assert!(allowed.permits(ip("8.8.8.8")), "public stays allowed");
        assert!(!AllowedNetworks::none().permits(ip("127.0.0.1")));

        let several: AllowedNetworks = " 10.0.0.0/8, fd00::/8 127.0.0.5".parse().unwrap();
        assert_eq!(several.networks().len(), 3);
        assert!(several.permits(ip("10.9.9.9")));
        assert!(several.permits(ip("fd00::1")));
        assert!(several.permits(ip("127.0.0.5")));
        assert!(!several.permits(ip("127.0.0.6")));
        assert_eq!(
            "".parse::<AllowedNetworks>().unwrap(),
            AllowedNetworks::none()
        );
        assert!("10.0.0.0/33".parse::<AllowedNetworks>().is_err());
        assert!("localhost".parse::<AllowedNetworks>().is_err());
    }

    #[test]
    fn literal_hosts_are_checked_names_are_left_to_the_resolver() {
        let allowed: AllowedNetworks = "127.0.0.1/32".parse().unwrap();
        let url = |s: &str| parse_http_url(s).unwrap();
        assert!(allowed.check_url(&url("http://127.0.0.1:9/h")).is_ok());
        let blocked = allowed.check_url(&url("http://127.0.0.2:9/h")).unwrap_err();
        assert_eq!(blocked.ip, ip("127.0.0.2"));
        assert!(blocked.to_string().starts_with(BLOCKED_DESTINATION));
        assert!(allowed.check_url(&url("http://[::1]:9/h")).is_err());
        assert!(allowed.check_url(&url("http://[::ffff:7f00:2]/")).is_err());
        // WHATWG parsing normalises the other spellings of an IPv4 address.
        assert!(allowed.check_url(&url("http://2130706434/")).is_err());
        assert!(allowed.check_url(&url("http://0x7f.0.0.2/")).is_err());
        assert!(allowed.check_url(&url("http://localhost:9/")).is_ok());
    }

    #[tokio::test]
    async fn the_resolver_drops_refused_addresses() {
        let only_v4 = GuardedResolver::new(Arc::new("127.0.0.1/32".parse().unwrap()));
        let addrs = only_v4.resolve_host("localhost").await.unwrap();
        assert!(addrs.iter().all(|a| a.ip() == ip("127.0.0.1")), "{addrs:?}");
        let nothing = GuardedResolver::new(Arc::new(AllowedNetworks::none()));
        let err = nothing.resolve_host("localhost").await.unwrap_err();
        let blocked = blocked_in(err.as_ref()).expect("a Blocked error");
        assert!(blocked.ip.is_loopback());
    }
}
