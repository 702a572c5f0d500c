//! Config validation: the shipped examples load, and each kind of mistake names its field.

use super::*;

mod http;
mod transport;

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
