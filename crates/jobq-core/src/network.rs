//! The bounds jobq puts on the connections it opens itself (the adapters' `pool(url, n)` and
//! `PoolExecutor::connect` helpers, a worker's LISTEN connection), wherever the URL does not set them: a
//! server or network that goes silent is noticed in well under a minute instead of the operating system's
//! two hours. A connection or pool the caller builds and hands to jobq keeps its own settings.

use std::time::Duration;

/// How long opening a connection may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a connection may be idle before TCP keepalive probes start.
pub const KEEPALIVE_IDLE: Duration = Duration::from_secs(15);
/// The time between keepalive probes.
pub const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(5);
/// How many unanswered probes close the connection.
pub const KEEPALIVE_RETRIES: u32 = 3;
/// How long sent data may stay unacknowledged before the connection is closed (Linux `TCP_USER_TIMEOUT`).
pub const TCP_USER_TIMEOUT: Duration = Duration::from_secs(30);

/// The libpq parameters for these bounds, for drivers that take a libpq URL: each `(key, value)` not
/// already in `url` is appended to it.
///
/// ```
/// let url = jobq_core::network::with_libpq_bounds("postgres://app@db/app?connect_timeout=3");
/// assert!(url.contains("connect_timeout=3") && !url.contains("connect_timeout=10"));
/// assert!(url.contains("&tcp_user_timeout=30000"));
/// ```
pub fn with_libpq_bounds(url: &str) -> String {
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        return url.to_owned();
    }
    let given: Vec<&str> = url
        .split_once('?')
        .map(|(_, query)| {
            query
                .split('&')
                .filter_map(|p| p.split('=').next())
                .collect()
        })
        .unwrap_or_default();
    let bounds = [
        ("connect_timeout", CONNECT_TIMEOUT.as_secs().to_string()),
        ("keepalives", "1".to_owned()),
        ("keepalives_idle", KEEPALIVE_IDLE.as_secs().to_string()),
        (
            "keepalives_interval",
            KEEPALIVE_INTERVAL.as_secs().to_string(),
        ),
        ("keepalives_count", KEEPALIVE_RETRIES.to_string()),
        ("tcp_user_timeout", TCP_USER_TIMEOUT.as_millis().to_string()),
    ];
    let mut url = url.to_owned();
    for (key, value) in bounds {
        if !given.contains(&key) {
            url.push(if url.contains('?') { '&' } else { '?' });
            url.push_str(&format!("{key}={value}"));
        }
    }
    url
}
