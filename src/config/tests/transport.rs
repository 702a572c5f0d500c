//! The `transport` and `admission` sections: defaults, values and the errors that name their
//! fields.

use super::*;

#[test]
fn pacing_cap_needs_bbr2() {
    let capped = with(CLIENT, r#""transport": {"max_pacing_rate_mbps": 16}"#);
    let Ok(Config::Client(c)) = parse(&capped, &conf_dir(), Role::Client) else {
        panic!("client")
    };
    assert_eq!(c.transport.max_pacing_rate_mbps, Some(16));
    let err = client_err(&with(
        CLIENT,
        r#""transport": {"congestion_control": "cubic", "max_pacing_rate_mbps": 16}"#,
    ));
    assert!(
        err.to_string()
            .starts_with("transport.max_pacing_rate_mbps: only bbr2"),
        "{err}"
    );
    let err = client_err(&with(CLIENT, r#""transport": {"max_pacing_rate_mbps": 0}"#));
    assert_eq!(err.field, "transport.max_pacing_rate_mbps");
}

#[test]
fn known_link_values_defaults_and_errors() {
    let Ok(Config::Client(c)) = parse(CLIENT, &conf_dir(), Role::Client) else {
        panic!("client")
    };
    assert_eq!(c.transport.link, None);
    let linked = with(
        CLIENT,
        r#""transport": {"link": {"rate_mbps": 20, "rtt_ms": 50}}"#,
    );
    let Ok(Config::Client(c)) = parse(&linked, &conf_dir(), Role::Client) else {
        panic!("client")
    };
    let link = c.transport.link.expect("link");
    assert_eq!(link.rate_mbps, 20);
    assert_eq!(link.rtt, Duration::from_millis(50));
    assert_eq!(link.hold_window, DEFAULT_LINK_HOLD_WINDOW);
    assert_eq!(link.bdp_bytes(), 125_000, "20 Mbit/s x 50 ms");
    assert_eq!(link.bytes_per_second(), 2_500_000);
    // The known RTT is the initial RTT estimate unless one is configured.
    assert_eq!(c.transport.initial_rtt, Duration::from_millis(50));
    let both = with(
        CLIENT,
        r#""transport": {"initial_rtt_ms": 80, "link": {"rate_mbps": 20, "rtt_ms": 50}}"#,
    );
    let Ok(Config::Client(c)) = parse(&both, &conf_dir(), Role::Client) else {
        panic!("client")
    };
    assert_eq!(c.transport.initial_rtt, Duration::from_millis(80));
    // CUBIC has no window floor: off by default, refused when asked for.
    let cubic = with(
        CLIENT,
        r#""transport": {"congestion_control": "cubic", "link": {"rate_mbps": 20, "rtt_ms": 50}}"#,
    );
    let Ok(Config::Client(c)) = parse(&cubic, &conf_dir(), Role::Client) else {
        panic!("client")
    };
    assert!(!c.transport.link.expect("link").hold_window);
    for (fragment, field) in [
        (
            r#"{"rate_mbps": 0, "rtt_ms": 50}"#,
            "transport.link.rate_mbps",
        ),
        (
            r#"{"rate_mbps": 1000001, "rtt_ms": 50}"#,
            "transport.link.rate_mbps",
        ),
        (r#"{"rate_mbps": 20, "rtt_ms": 0}"#, "transport.link.rtt_ms"),
        (
            r#"{"rate_mbps": 20, "rtt_ms": 10001}"#,
            "transport.link.rtt_ms",
        ),
        (
            r#"{"rate_mbps": 20, "rtt_ms": 50, "mtu": 1500}"#,
            "transport",
        ),
        (r#"{"rtt_ms": 50}"#, "transport"),
    ] {
        let text = with(CLIENT, &format!(r#""transport": {{"link": {fragment}}}"#));
        let err = client_err(&text);
        assert!(err.to_string().contains(field), "{err} should name {field}");
    }
    let err = client_err(&with(
        CLIENT,
        r#""transport": {"congestion_control": "reno", "link": {"rate_mbps": 20, "rtt_ms": 50, "hold_window": true}}"#,
    ));
    assert_eq!(err.field, "transport.link.hold_window");
}

#[test]
fn admission_defaults_values_and_errors() {
    let Ok(Config::Server(s)) = parse(SERVER, &conf_dir(), Role::Server) else {
        panic!("server")
    };
    let a = &s.admission;
    assert_eq!(a.retry, DEFAULT_RETRY);
    assert_eq!(a.max_handshakes, DEFAULT_MAX_HANDSHAKES);
    assert_eq!(a.max_sessions, DEFAULT_MAX_SESSIONS);
    assert_eq!(
        a.handshake_timeout,
        Duration::from_millis(DEFAULT_HANDSHAKE_TIMEOUT_MS)
    );
    assert_eq!(
        (a.source_rate, a.source_burst),
        (DEFAULT_SOURCE_RATE, DEFAULT_SOURCE_BURST)
    );
    assert_eq!(a.auto_retry_threshold(), DEFAULT_MAX_HANDSHAKES / 4);
    let set = with(
        SERVER,
        r#""admission": {"retry": "always", "max_handshakes": 2, "max_sessions": 3,
            "handshake_timeout_ms": 900, "source_rate": 4, "source_burst": 5}"#,
    );
    let Ok(Config::Server(s)) = parse(&set, &conf_dir(), Role::Server) else {
        panic!("server")
    };
    let a = &s.admission;
    assert_eq!(a.retry, RetryMode::Always);
    assert_eq!((a.max_handshakes, a.max_sessions), (2, 3));
    assert_eq!(a.handshake_timeout, Duration::from_millis(900));
    assert_eq!((a.source_rate, a.source_burst), (4, 5));
    assert_eq!(a.auto_retry_threshold(), 1, "never below one");
    for (fragment, field) in [
        (r#""admission": {"retry": "sometimes"}"#, "admission.retry"),
        (
            r#""admission": {"max_handshakes": 0}"#,
            "admission.max_handshakes",
        ),
        (
            r#""admission": {"max_sessions": 0}"#,
            "admission.max_sessions",
        ),
        (
            r#""admission": {"handshake_timeout_ms": 0}"#,
            "admission.handshake_timeout_ms",
        ),
        (
            r#""admission": {"source_rate": 0}"#,
            "admission.source_rate",
        ),
        (
            r#""admission": {"source_burst": 0}"#,
            "admission.source_burst",
        ),
        (r#""admission": {"max_sessoins": 1}"#, "max_sessoins"),
    ] {
        let err = server_err(&with(SERVER, fragment));
        assert!(err.to_string().contains(field), "{err} should name {field}");
    }
}

#[test]
fn first_contact_fields_default_and_validate() {
    let Ok(Config::Client(c)) = parse(CLIENT, &conf_dir(), Role::Client) else {
        panic!("client")
    };
    // 30 initial RTTs of 100 ms, and never under 3 s
    assert_eq!(c.reconnect.handshake_timeout, Duration::from_millis(3_000));
    assert_eq!(c.reuse_port, DEFAULT_REUSE_PORT);
    assert!(!c.reuse_port);
    let slow = with(CLIENT, r#""transport": {"initial_rtt_ms": 400}"#);
    let Ok(Config::Client(c)) = parse(&slow, &conf_dir(), Role::Client) else {
        panic!("client")
    };
    assert_eq!(c.reconnect.handshake_timeout, Duration::from_millis(12_000));
    let short_idle = with(
        CLIENT,
        r#""transport": {"idle_timeout_ms": 2000, "keepalive_interval_ms": 1000}"#,
    );
    let Ok(Config::Client(c)) = parse(&short_idle, &conf_dir(), Role::Client) else {
        panic!("client")
    };
    assert_eq!(c.reconnect.handshake_timeout, Duration::from_millis(2_000));
    let set = with(
        CLIENT,
        r#""reconnect": {"handshake_timeout_ms": 1500}, "reuse_port": true"#,
    );
    let Ok(Config::Client(c)) = parse(&set, &conf_dir(), Role::Client) else {
        panic!("client")
    };
    assert_eq!(c.reconnect.handshake_timeout, Duration::from_millis(1_500));
    assert!(c.reuse_port);
    let Ok(Config::Server(s)) = parse(
        &with(SERVER, r#""reuse_port": true"#),
        &conf_dir(),
        Role::Server,
    ) else {
        panic!("server")
    };
    assert!(s.reuse_port);
    for (fragment, field) in [
        (
            r#""reconnect": {"handshake_timeout_ms": 0}"#,
            "reconnect.handshake_timeout_ms",
        ),
        (
            r#""reconnect": {"handshake_timeout_ms": 60000}"#,
            "reconnect.handshake_timeout_ms: must not exceed",
        ),
        (r#""reuse_port": "yes""#, "reuse_port: invalid type"),
    ] {
        let err = client_err(&with(CLIENT, fragment));
        assert!(err.to_string().contains(field), "{err} should name {field}");
    }
}

#[test]
fn acks_wait_for_answers_only_under_cubic_and_reno() {
    let transport = |fragment: &str| {
        let Ok(Config::Client(c)) = parse(&with(CLIENT, fragment), &conf_dir(), Role::Client)
        else {
            panic!("{fragment}")
        };
        c.transport
    };
    for cc in ["cubic", "reno"] {
        let t = transport(&format!(r#""transport": {{"congestion_control": "{cc}"}}"#));
        assert!(t.holds_acks_for_answers(), "{cc}");
        assert_eq!(t.ack_delay, Duration::from_millis(DEFAULT_ACK_DELAY_MS));
    }
    let t = transport(r#""transport": {"congestion_control": "bbr2", "ack_delay_ms": 25}"#);
    assert!(!t.holds_acks_for_answers());
    assert_eq!(
        t.ack_delay,
        Duration::from_millis(25),
        "bulk data still waits"
    );
    let t = transport(r#""transport": {"congestion_control": "cubic", "ack_delay_ms": 0}"#);
    assert_eq!(t.ack_delay, Duration::ZERO);
}
