//! The peers shapes: `peer` or `peers`, groups with their policy, and each mistake naming its
//! field.

use std::path::{Path, PathBuf};

use crate::config::{parse, ClientConfig, Config, ConfigError, PeerGroup, Policy, Role};

const TLS_CLIENT: &str = r#""tls": {"ca": "demo-certs/ca.pem", "cert": "demo-certs/client.pem", "key": "demo-certs/client.key"}"#;
const TWO_PEERS: &str = r#""peers": [
    {"name": "east", "address": "127.0.0.1:4433", "server_name": "localhost"},
    {"name": "west", "address": "peers.example.invalid:4433", "server_name": "localhost",
     "sessions": "per_address"}]"#;

fn conf_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("conf")
}

fn client(fields: &str) -> Result<ClientConfig, ConfigError> {
    let text = format!(r#"{{"listen": ["127.0.0.1:8080"], {TLS_CLIENT}, {fields}}}"#);
    match parse(&text, &conf_dir(), Role::Client)? {
        Config::Client(c) => Ok(c),
        Config::Server(_) => panic!("role"),
    }
}

fn field_of(r: Result<ClientConfig, ConfigError>) -> String {
    match r {
        Ok(c) => panic!("accepted: {:?}", c.peers),
        Err(e) => e.field,
    }
}

#[test]
fn one_peer_is_named_default_and_several_keep_their_names_and_session_shape() {
    let one = client(r#""peer": {"address": "127.0.0.1:4433", "server_name": "localhost"}"#)
        .expect("one peer");
    assert_eq!(one.peers.len(), 1);
    assert_eq!(
        (one.peers[0].name.as_str(), one.peers[0].per_address),
        ("default", false)
    );
    assert_eq!(one.peer_silence, None);
    let two = client(&format!(r#"{TWO_PEERS}, "peer_silence_ms": 400"#)).expect("two peers");
    let names: Vec<(&str, bool)> = two
        .peers
        .iter()
        .map(|p| (p.name.as_str(), p.per_address))
        .collect();
    assert_eq!(names, vec![("east", false), ("west", true)]);
    assert_eq!(
        two.peer_silence,
        Some(std::time::Duration::from_millis(400))
    );
}

#[test]
fn routes_and_listeners_name_their_peers_and_policy() {
    let c = client(&format!(
        r#"{TWO_PEERS}, "listeners": [
            {{"address": "127.0.0.1:8081", "peers": ["west", "east"], "policy": "spread",
              "routes": [{{"host": "a.example", "service": "a", "peers": ["east"]}},
                         {{"service": "b"}}]}},
            {{"address": "127.0.0.1:8082", "policy": "spread"}}]"#
    ))
    .expect("config");
    let rules = &c.listener_rules[1];
    let group = |peers: &[&str], policy| PeerGroup {
        peers: peers.iter().map(|p| p.to_string()).collect(),
        policy,
    };
    assert_eq!(
        rules.peers(Some("a.example")),
        Some(&group(&["east"], Policy::Failover))
    );
    assert_eq!(
        rules.peers(Some("b.example")),
        Some(&group(&["west", "east"], Policy::Spread)),
        "a route naming no peer takes its listener's"
    );
    assert_eq!(
        c.listener_rules[2].peers(None),
        Some(&group(&["east", "west"], Policy::Spread)),
        "a policy alone applies to every peer, in file order"
    );
    assert_eq!(
        c.listener_rules[0].peers(None),
        None,
        "`listen`: every peer, failover"
    );
}

#[test]
fn peer_mistakes_name_their_field() {
    let peer = r#""peer": {"address": "127.0.0.1:4433", "server_name": "localhost"}"#;
    let l = |fields: &str| {
        client(&format!(
            r#"{TWO_PEERS}, "listeners": [{{"address": "127.0.0.1:8081", {fields}}}]"#
        ))
    };
    let cases = [
        (client(&format!("{peer}, {TWO_PEERS}")), "peers"),
        (client(r#""log_level": "info""#), "peer"),
        (client(r#""peers": []"#), "peers"),
        (
            client(r#""peers": [{"address": "127.0.0.1:1", "server_name": "localhost"}]"#),
            "peers[0].name",
        ),
        (
            client(
                r#""peers": [{"name": "a b", "address": "127.0.0.1:1", "server_name": "localhost"}]"#,
            ),
            "peers[0].name",
        ),
        (
            client(
                r#""peers": [{"name": "a", "address": "127.0.0.1:1", "server_name": "localhost"},
                             {"name": "a", "address": "127.0.0.1:2", "server_name": "localhost"}]"#,
            ),
            "peers[1].name",
        ),
        (
            client(r#""peers": [{"name": "a", "address": "nowhere", "server_name": "localhost"}]"#),
            "peers[0].address",
        ),
        (
            client(r#""peers": [{"name": "a", "address": "127.0.0.1:1", "server_name": " "}]"#),
            "peers[0].server_name",
        ),
        (
            client(
                r#""peers": [{"name": "a", "address": "127.0.0.1:1", "server_name": "localhost", "sessions": "many"}]"#,
            ),
            "peers[0].sessions",
        ),
        (
            client(&format!(r#"{peer}, "peer_silence_ms": 0"#)),
            "peer_silence_ms",
        ),
        (l(r#""peers": ["north"]"#), "listeners[0].peers[0]"),
        (l(r#""peers": []"#), "listeners[0].peers"),
        (l(r#""peers": ["east", "east"]"#), "listeners[0].peers[1]"),
        (l(r#""policy": "random""#), "listeners[0].policy"),
        (
            l(r#""routes": [{"service": "a", "peers": ["north"]}]"#),
            "listeners[0].routes[0].peers[0]",
        ),
    ];
    for (result, field) in cases {
        assert_eq!(field_of(result), field);
    }
}
