//! Config validation: the shipped examples load, and each kind of mistake names its field.

use super::*;

fn conf_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("conf")
}

const CLIENT: &str = r#"{
  "listen": ["127.0.0.1:8080"],
  "peer": {"address": "127.0.0.1:4433", "server_name": "localhost"},
  "tls": {"ca": "demo-certs/ca.pem", "cert": "demo-certs/client.pem", "key": "demo-certs/client.key"}
}"#;

const SERVER: &str = r#"{
  "listen": "127.0.0.1:4433",
  "upstream": {"address": "127.0.0.1:8000"},
  "tls": {"ca": "demo-certs/ca.pem", "cert": "demo-certs/server.pem", "key": "demo-certs/server.key"}
}"#;

/// Inserts `fragment` (a `"key": value` pair) into the outermost object of `base`.
fn with(base: &str, fragment: &str) -> String {
    let open = base.find('{').unwrap_or(0);
    format!("{{{fragment},{}", &base[open + 1..])
}

fn client_err(text: &str) -> ConfigError {
    match parse(text, &conf_dir(), Role::Client) {
        Ok(_) => panic!("expected an error for {text}"),
        Err(e) => e,
    }
}

fn server_err(text: &str) -> ConfigError {
    match parse(text, &conf_dir(), Role::Server) {
        Ok(_) => panic!("expected an error for {text}"),
        Err(e) => e,
    }
}

#[test]
fn shipped_examples_load() {
    assert!(matches!(
        load(&conf_dir().join("a.json"), Role::Client),
        Ok(Config::Client(_))
    ));
    assert!(matches!(
        load(&conf_dir().join("b.json"), Role::Server),
        Ok(Config::Server(_))
    ));
}

#[test]
fn minimal_files_get_documented_defaults() {
    let Ok(Config::Client(c)) = parse(CLIENT, &conf_dir(), Role::Client) else {
        panic!("client")
    };
    assert_eq!(c.transport.congestion_control, DEFAULT_CONGESTION_CONTROL);
    assert_eq!(
        c.transport.idle_timeout,
        Duration::from_millis(DEFAULT_IDLE_TIMEOUT_MS)
    );
    assert_eq!(
        c.http.session_wait,
        Duration::from_millis(DEFAULT_SESSION_WAIT_MS)
    );
    assert_eq!(c.tls.ca, conf_dir().join("demo-certs/ca.pem"));
    assert_eq!(c.transport.connection_id_bytes, DEFAULT_CONNECTION_ID_BYTES);
    assert_eq!(
        c.transport.ack_delay,
        Duration::from_millis(DEFAULT_ACK_DELAY_MS)
    );
    assert!(
        !c.transport.holds_acks_for_answers(),
        "BBR2, the default, acknowledges a completed message at once"
    );
    let Ok(Config::Server(s)) = parse(SERVER, &conf_dir(), Role::Server) else {
        panic!("server")
    };
    assert_eq!(
        s.services.list[0].upstream.max_idle,
        DEFAULT_UPSTREAM_MAX_IDLE
    );
    assert!(s.allowed_client_names.is_none());
}

#[test]
fn errors_name_the_field() {
    let cases: &[(Role, String, &str)] = &[
        (Role::Client, with(CLIENT, r#""bogus": 1"#), "bogus"),
        (
            Role::Client,
            with(CLIENT, r#""transport": {"congestion_control": "vegas"}"#),
            "transport.congestion_control",
        ),
        (
            Role::Client,
            with(CLIENT, r#""transport": {"idle_timeout_ms": 0}"#),
            "transport.idle_timeout_ms",
        ),
        (
            Role::Client,
            with(
                CLIENT,
                r#""transport": {"idle_timeout_ms": 4000, "keepalive_interval_ms": 3000}"#,
            ),
            "transport.keepalive_interval_ms",
        ),
        (
            Role::Client,
            with(CLIENT, r#""transport": {"liveness_timeout_ms": 50}"#),
            "transport.liveness_timeout_ms",
        ),
        (
            Role::Server,
            with(
                SERVER,
                r#""transport": {"idle_timeout_ms": 4000, "keepalive_interval_ms": 1000, "liveness_timeout_ms": 4000}"#,
            ),
            "transport.liveness_timeout_ms",
        ),
        (
            Role::Client,
            with(CLIENT, r#""transport": {"stream_window": 10}"#),
            "transport.stream_window",
        ),
        (
            Role::Client,
            with(CLIENT, r#""transport": {"max_concurrent_streams": 0}"#),
            "transport.max_concurrent_streams",
        ),
        (
            Role::Client,
            with(CLIENT, r#""transport": {"connection_id_bytes": 3}"#),
            "transport.connection_id_bytes",
        ),
        (
            Role::Server,
            with(SERVER, r#""transport": {"connection_id_bytes": 21}"#),
            "transport.connection_id_bytes",
        ),
        (
            Role::Server,
            with(
                SERVER,
                r#""transport": {"congestion_control": "cubic", "ack_delay_ms": 26}"#,
            ),
            "transport.ack_delay_ms",
        ),
        (
            Role::Client,
            with(CLIENT, r#""http": {"session_wait_ms": 0}"#),
            "http.session_wait_ms",
        ),
        (
            Role::Client,
            with(CLIENT, r#""http": {"max_head_bytes": 10}"#),
            "http.max_head_bytes",
        ),
        (
            Role::Client,
            with(
                CLIENT,
                r#""reconnect": {"initial_backoff_ms": 500, "max_backoff_ms": 100}"#,
            ),
            "reconnect.max_backoff_ms",
        ),
        (
            Role::Client,
            CLIENT.replace("127.0.0.1:4433", "nowhere"),
            "peer.address",
        ),
        (
            Role::Client,
            CLIENT.replace("[\"127.0.0.1:8080\"]", "[]"),
            "listen",
        ),
        (
            Role::Client,
            CLIENT.replace("127.0.0.1:8080", "1.2.3.4"),
            "listen[0]",
        ),
        (
            Role::Client,
            CLIENT.replace("\"localhost\"", "\" \""),
            "peer.server_name",
        ),
        (
            Role::Client,
            CLIENT.replace("\"localhost\"", "\"bad name\""),
            "peer.server_name: invalid server name",
        ),
        (
            Role::Client,
            CLIENT.replace("demo-certs/ca.pem", "missing.pem"),
            "tls.ca",
        ),
        (
            Role::Client,
            CLIENT.replace("demo-certs/client.key", "demo-certs"),
            "tls.key",
        ),
        (Role::Server, with(SERVER, r#""peer": {}"#), "peer"),
        (
            Role::Client,
            with(CLIENT, r#""transport": {"pacing": "yes"}"#),
            "pacing: invalid type",
        ),
        (
            Role::Client,
            with(CLIENT, r#""http": {"session_wait_ms": -5}"#),
            "session_wait_ms: invalid value",
        ),
        (
            Role::Server,
            SERVER.replace("\"127.0.0.1:8000\"", "\"x:y\""),
            "upstream.address",
        ),
        (
            Role::Server,
            SERVER.replace("server.key\"", "server.key\", \"allowed_client_names\": []"),
            "tls.allowed_client_names",
        ),
        (
            Role::Server,
            SERVER.replace("server.pem", "nope.pem"),
            "tls.cert",
        ),
    ];
    for (role, text, field) in cases {
        let err = match role {
            Role::Client => client_err(text),
            Role::Server => server_err(text),
        };
        assert!(
            err.to_string().contains(field),
            "error {err} should name {field}"
        );
    }
}

#[test]
fn client_file_is_rejected_as_server_config() {
    let err = server_err(CLIENT);
    assert!(err.to_string().starts_with("listen: invalid type"), "{err}");
}

#[test]
fn forwarding_and_body_limit_fields() {
    let Ok(Config::Client(c)) = parse(CLIENT, &conf_dir(), Role::Client) else {
        panic!("client")
    };
    assert_eq!(c.http.max_body_bytes, None);
    assert_eq!(
        c.http.forwarding,
        Forwarding {
            forwarded: DEFAULT_FORWARDED,
            via: DEFAULT_VIA,
            x_forwarded_for: DEFAULT_X_FORWARDED_FOR
        }
    );
    let text = with(
        CLIENT,
        r#""http": {"max_body_bytes": 1000, "forwarded": false, "via": false, "x_forwarded_for": true}"#,
    );
    let Ok(Config::Client(c)) = parse(&text, &conf_dir(), Role::Client) else {
        panic!("client")
    };
    assert_eq!(c.http.max_body_bytes, Some(1000));
    assert_eq!(
        c.http.forwarding,
        Forwarding {
            forwarded: false,
            via: false,
            x_forwarded_for: true
        }
    );
    for (fragment, field) in [
        (r#""http": {"max_body_bytes": 0}"#, "http.max_body_bytes"),
        (r#""http": {"via": 1}"#, "via: invalid type"),
    ] {
        let err = client_err(&with(CLIENT, fragment));
        assert!(err.to_string().contains(field), "{err} should name {field}");
    }
}

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
fn peer_names_are_kept_for_resolution() {
    let named = CLIENT.replace("127.0.0.1:4433", "peer.example.invalid:4433");
    let Ok(Config::Client(c)) = parse(&named, &conf_dir(), Role::Client) else {
        panic!("a name that does not resolve yet is valid: it is resolved when connecting")
    };
    assert_eq!(c.peers[0].address.to_string(), "peer.example.invalid:4433");
    assert_eq!(c.peers[0].address.literal(), None);
    // Upstream names: config::services::tests.
}

#[test]
fn body_timeout_defaults_and_validates() {
    let Ok(Config::Client(c)) = parse(CLIENT, &conf_dir(), Role::Client) else {
        panic!("client")
    };
    assert_eq!(
        c.http.body_timeout,
        Duration::from_millis(DEFAULT_BODY_TIMEOUT_MS)
    );
    let text = with(CLIENT, r#""http": {"body_timeout_ms": 1500}"#);
    let Ok(Config::Client(c)) = parse(&text, &conf_dir(), Role::Client) else {
        panic!("client")
    };
    assert_eq!(c.http.body_timeout, Duration::from_millis(1500));
    let err = client_err(&with(CLIENT, r#""http": {"body_timeout_ms": 0}"#));
    assert!(
        err.to_string().contains("http.body_timeout_ms"),
        "{err} should name http.body_timeout_ms"
    );
}

#[test]
fn unknown_fields_are_named_with_the_object_that_holds_them() {
    let cases: &[(Role, String, &str)] = &[
        // after a nested object: the key before it (`max_backoff_ms`) was named before
        (
            Role::Client,
            CLIENT.replace(
                "\"listen\"",
                r#""reconnect": {"max_backoff_ms": 900}, "listn": 1, "listen""#,
            ),
            "listn: unknown field at the top level; expected one of `listen`",
        ),
        (
            Role::Client,
            CLIENT.replace(
                "\"key\": \"demo-certs/client.key\"",
                r#""key": "demo-certs/client.key", "insecure_skip_verify": true"#,
            ),
            "tls.insecure_skip_verify: unknown field in \"tls\"; expected one of `ca`",
        ),
        (
            Role::Server,
            with(
                SERVER,
                r#""transport": {"pacing": true, "loss_hiding": {"mode": "off", "gap": 1}}"#,
            ),
            "transport.loss_hiding.gap: unknown field in \"transport.loss_hiding\"",
        ),
        (
            Role::Server,
            with(
                SERVER,
                r#""upstream": {"address": "127.0.0.1:1", "frobnicate_ms": 5}"#,
            ),
            "upstream.frobnicate_ms: unknown field in \"upstream\"",
        ),
        // other serde errors: the dotted path of the key whose value is wrong
        (
            Role::Client,
            with(CLIENT, r#""transport": {"pacing": "yes"}"#),
            "transport.pacing: invalid type",
        ),
        (
            Role::Client,
            with(
                CLIENT,
                r#""reconnect": {"max_backoff_ms": 1}, "http": {"via": 3}"#,
            ),
            "http.via: invalid type",
        ),
        (
            Role::Client,
            CLIENT.replace(", \"key\": \"demo-certs/client.key\"", ""),
            "tls: missing field `key`",
        ),
    ];
    for (role, text, expected) in cases {
        let err = match role {
            Role::Client => client_err(text),
            Role::Server => server_err(text),
        };
        assert!(
            err.to_string().starts_with(expected),
            "error {err:?} should start with {expected:?}"
        );
    }
}

#[test]
fn the_tunnel_idle_timeout_has_a_default_and_bounds() {
    let Ok(Config::Server(s)) = parse(SERVER, &conf_dir(), Role::Server) else {
        panic!("server")
    };
    assert_eq!(
        s.http.tunnel_idle_timeout,
        Duration::from_millis(DEFAULT_TUNNEL_IDLE_TIMEOUT_MS)
    );
    let text = with(SERVER, r#""http": {"tunnel_idle_timeout_ms": 2500}"#);
    let Ok(Config::Server(s)) = parse(&text, &conf_dir(), Role::Server) else {
        panic!("server with tunnel_idle_timeout_ms")
    };
    assert_eq!(s.http.tunnel_idle_timeout, Duration::from_millis(2500));
    for bad in ["0", "86400001"] {
        let text = with(
            SERVER,
            &format!(r#""http": {{"tunnel_idle_timeout_ms": {bad}}}"#),
        );
        let err = server_err(&text);
        assert!(
            err.to_string().contains("http.tunnel_idle_timeout_ms"),
            "{err} should name http.tunnel_idle_timeout_ms"
        );
    }
    // Both roles have it.
    let text = with(CLIENT, r#""http": {"tunnel_idle_timeout_ms": 1000}"#);
    let Ok(Config::Client(c)) = parse(&text, &conf_dir(), Role::Client) else {
        panic!("client with tunnel_idle_timeout_ms")
    };
    assert_eq!(c.http.tunnel_idle_timeout, Duration::from_millis(1000));
    let Ok(Config::Client(c)) = parse(CLIENT, &conf_dir(), Role::Client) else {
        panic!("client")
    };
    assert_eq!(
        c.http.tunnel_idle_timeout,
        Duration::from_millis(DEFAULT_TUNNEL_IDLE_TIMEOUT_MS)
    );
    let bad = with(CLIENT, r#""http": {"tunnel_idle_timeout_ms": 0}"#);
    assert!(client_err(&bad)
        .to_string()
        .contains("http.tunnel_idle_timeout_ms"));
}

#[test]
fn compression_is_off_by_default_and_validates_its_types() {
    let Ok(Config::Client(c)) = parse(CLIENT, &conf_dir(), Role::Client) else {
        panic!("client")
    };
    let p = &c.http.compression;
    assert!(!p.enabled);
    assert_eq!(p.min_bytes, DEFAULT_COMPRESSION_MIN_BYTES);
    assert_eq!(p.types, DEFAULT_COMPRESSION_TYPES);
    let text = with(
        SERVER,
        r#""http": {"compression": {"enabled": true, "min_bytes": 10, "types": ["Text/*", "+json", "application/XML"]}}"#,
    );
    let Ok(Config::Server(s)) = parse(&text, &conf_dir(), Role::Server) else {
        panic!("server")
    };
    let p = &s.http.compression;
    assert!(p.enabled && p.min_bytes == 10);
    assert_eq!(p.types, ["text/*", "+json", "application/xml"]);
    for bad in [
        r#""json""#,
        r#""+""#,
        r#""text/""#,
        r#""*/*x""#,
        r#""a b/c""#,
    ] {
        let text = with(
            CLIENT,
            &format!(r#""http": {{"compression": {{"types": [{bad}]}}}}"#),
        );
        let err = client_err(&text);
        assert!(
            err.to_string().contains("http.compression.types"),
            "{bad}: {err}"
        );
    }
    let err = server_err(&with(SERVER, r#""http": {"compression": {"level": 9}}"#));
    assert!(err.to_string().contains("level"), "{err}");
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

/// A folder of its own under the temp dir, for files a test writes.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ptproxy-config-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn with_dictionary(base: &str, path: &Path, extra: &str) -> String {
    with(
        base,
        &format!(
            r#""http": {{"compression": {{"enabled": true, "dictionary": {:?}{extra}}}}}"#,
            path.display().to_string()
        ),
    )
}

#[test]
fn compression_dictionary_loads_a_zstd_dictionary_and_lowers_min_bytes() {
    let dir = scratch("dict-ok");
    let samples: Vec<Vec<u8>> = (0..200)
        .map(|i| format!("{{\"id\":{i},\"name\":\"user {i}\",\"status\":\"active\"}}").into_bytes())
        .collect();
    let bytes = zstd::dict::from_samples(&samples, 2048).unwrap();
    let path = dir.join("api.dict");
    std::fs::write(&path, &bytes).unwrap();
    let Ok(Config::Server(s)) = parse(
        &with_dictionary(SERVER, &path, ""),
        &conf_dir(),
        Role::Server,
    ) else {
        panic!("server")
    };
    let p = &s.http.compression;
    let d = p.dictionary.as_ref().expect("loaded");
    assert_eq!(
        d.id(),
        crate::bridge::compression::dictionary::id_of(&bytes)
    );
    assert_eq!(p.min_bytes, DEFAULT_COMPRESSION_MIN_BYTES);
    assert_eq!(
        p.dictionary_min_bytes,
        DEFAULT_COMPRESSION_MIN_BYTES_WITH_DICTIONARY
    );
    let text = with_dictionary(CLIENT, &path, r#", "min_bytes": 500"#);
    let Ok(Config::Client(c)) = parse(&text, &conf_dir(), Role::Client) else {
        panic!("client")
    };
    let p = &c.http.compression;
    assert_eq!((p.min_bytes, p.dictionary_min_bytes), (500, 500));
    let Ok(Config::Client(c)) = parse(CLIENT, &conf_dir(), Role::Client) else {
        panic!("client")
    };
    assert!(c.http.compression.dictionary.is_none());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn compression_dictionary_errors_name_the_field() {
    let dir = scratch("dict-bad");
    let not_dict = dir.join("body.json");
    std::fs::write(&not_dict, br#"{"id": 1, "name": "not a dictionary"}"#).unwrap();
    let large = dir.join("large.dict");
    std::fs::write(&large, vec![0u8; 1024 * 1024 + 1]).unwrap();
    for (path, reason) in [
        (not_dict, "not a zstd dictionary"),
        (dir.join("missing.dict"), "cannot read"),
        (large, "larger than"),
    ] {
        let err = client_err(&with_dictionary(CLIENT, &path, ""));
        assert_eq!(err.field, "http.compression.dictionary", "{err}");
        assert!(err.reason.contains(reason), "{err}");
        let err = server_err(&with_dictionary(SERVER, &path, ""));
        assert_eq!(err.field, "http.compression.dictionary", "{err}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
