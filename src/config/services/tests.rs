//! The services and routes shapes: what they accept, and each mistake naming its field.

use std::path::{Path, PathBuf};

use crate::config::{parse, Config, ConfigError, Role, ServerConfig};

fn conf_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("conf")
}

const TLS_SERVER: &str = r#""tls": {"ca": "demo-certs/ca.pem", "cert": "demo-certs/server.pem", "key": "demo-certs/server.key"}"#;
const TLS_CLIENT: &str = r#""tls": {"ca": "demo-certs/ca.pem", "cert": "demo-certs/client.pem", "key": "demo-certs/client.key"}"#;

fn server(fields: &str) -> Result<ServerConfig, ConfigError> {
    let text = format!(r#"{{"listen": "127.0.0.1:4433", {TLS_SERVER}, {fields}}}"#);
    match parse(&text, &conf_dir(), Role::Server)? {
        Config::Server(s) => Ok(s),
        Config::Client(_) => panic!("role"),
    }
}

fn client(fields: &str) -> Result<crate::config::ClientConfig, ConfigError> {
    let text = format!(
        r#"{{"peer": {{"address": "127.0.0.1:4433", "server_name": "localhost"}}, {TLS_CLIENT}, {fields}}}"#
    );
    match parse(&text, &conf_dir(), Role::Client)? {
        Config::Client(c) => Ok(c),
        Config::Server(_) => panic!("role"),
    }
}

fn field_of(r: Result<impl std::fmt::Debug, ConfigError>) -> String {
    match r {
        Ok(v) => panic!("accepted: {v:?}"),
        Err(e) => e.field,
    }
}

#[test]
fn the_top_level_upstream_is_the_default_service_beside_named_ones() {
    let s = server(
        r#""upstream": {"address": "127.0.0.1:8000"},
           "services": [{"name": "orders", "upstream": {"address": "127.0.0.1:9001", "response_timeout_ms": 500},
                         "allow": [{"identity": "spiffe://corp/ns/a/*", "methods": ["GET"], "paths": ["/v1/"]}]},
                        {"name": "billing", "upstream": {"address": "localhost:9002"}}]"#,
    )
    .expect("valid");
    let names: Vec<&str> = s.services.list.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["default", "orders", "billing"]);
    assert_eq!(s.services.find(None), Some(0));
    assert_eq!(s.services.find(Some("billing")), Some(2));
    assert_eq!(s.services.find(Some("nope")), None);
    let orders = &s.services.list[1];
    assert_eq!(orders.upstream.response_timeout.as_millis(), 500);
    assert_eq!(orders.allow.as_ref().map(Vec::len), Some(1));
    assert!(s.services.list[2].allow.is_none());

    let only_named =
        server(r#""services": [{"name": "a", "upstream": {"address": "127.0.0.1:1"}}]"#)
            .expect("valid");
    assert_eq!(only_named.services.find(None), None, "no default service");
}

#[test]
fn service_mistakes_name_their_field() {
    let up = r#""upstream": {"address": "127.0.0.1:1"}"#;
    let svc = |fields: &str| server(&format!(r#""services": [{{{fields}}}]"#));
    let cases = [
        (server(r#""services": []"#).map(|_| ()), "upstream"),
        (
            svc(&format!(r#""name": "Orders", {up}"#)).map(|_| ()),
            "services[0].name",
        ),
        (
            svc(&format!(r#""name": "", {up}"#)).map(|_| ()),
            "services[0].name",
        ),
        (
            svc(&format!(r#""name": "-x", {up}"#)).map(|_| ()),
            "services[0].name",
        ),
        (
            svc(r#""name": "a", "upstream": {"address": "nope"}"#).map(|_| ()),
            "services[0].upstream.address",
        ),
        (
            svc(r#""name": "a", "upstream": {"address": "127.0.0.1:1", "connect_timeout_ms": 0}"#)
                .map(|_| ()),
            "services[0].upstream.connect_timeout_ms",
        ),
        (
            svc(&format!(r#""name": "a", {up}, "allow": []"#)).map(|_| ()),
            "services[0].allow",
        ),
        (
            svc(&format!(
                r#""name": "a", {up}, "allow": [{{"identity": "a*b"}}]"#
            ))
            .map(|_| ()),
            "services[0].allow[0].identity",
        ),
        (
            svc(&format!(
                r#""name": "a", {up}, "allow": [{{"identity": "*", "methods": ["get"]}}]"#
            ))
            .map(|_| ()),
            "services[0].allow[0].methods[0]",
        ),
        (
            svc(&format!(
                r#""name": "a", {up}, "allow": [{{"identity": "*", "methods": []}}]"#
            ))
            .map(|_| ()),
            "services[0].allow[0].methods",
        ),
        (
            svc(&format!(
                r#""name": "a", {up}, "allow": [{{"identity": "*", "paths": ["v1"]}}]"#
            ))
            .map(|_| ()),
            "services[0].allow[0].paths[0]",
        ),
        (
            svc(&format!(
                r#""name": "a", {up}, "allow": [{{"identity": "*", "paths": ["/v1/../x"]}}]"#
            ))
            .map(|_| ()),
            "services[0].allow[0].paths[0]",
        ),
        (
            server(&format!(
                r#"{up}, "services": [{{"name": "default", {up}}}]"#
            ))
            .map(|_| ()),
            "services[0].name",
        ),
        (
            server(&format!(
                r#""services": [{{"name": "a", {up}}}, {{"name": "a", {up}}}]"#
            ))
            .map(|_| ()),
            "services[1].name",
        ),
    ];
    for (result, field) in cases {
        assert_eq!(field_of(result), field);
    }
}

#[test]
fn listeners_route_by_host_with_a_catch_all_last() {
    let c = client(
        r#""listen": ["127.0.0.1:8080"],
           "listeners": [{"address": "127.0.0.1:8081",
                          "routes": [{"host": "Orders.Example", "service": "orders"}, {"service": "billing"}],
                          "allow_sources": ["127.0.0.0/8", "::1"]}]"#,
    )
    .expect("valid");
    assert_eq!(c.listen.len(), 2);
    assert_eq!(
        c.listener_rules[0],
        Default::default(),
        "listen entries have no routes"
    );
    let rules = &c.listener_rules[1];
    assert_eq!(rules.route(Some("orders.example:8081")), Some("orders"));
    assert_eq!(rules.route(Some("ORDERS.example")), Some("orders"));
    assert_eq!(rules.route(Some("other.example")), Some("billing"));
    assert_eq!(rules.route(None), Some("billing"));
    assert_eq!(c.listener_rules[0].route(Some("x")), None);
    assert!(rules.admits("127.9.9.9".parse().unwrap()));
    assert!(rules.admits("::1".parse().unwrap()));
    assert!(!rules.admits("10.0.0.1".parse().unwrap()));
    assert!(c.listener_rules[0].admits("10.0.0.1".parse().unwrap()));
    let bracketed = client(
        r#""listeners": [{"address": "[::1]:8081", "routes": [{"host": "::1", "service": "a"}, {"service": "b"}]}]"#,
    )
    .expect("valid");
    assert_eq!(
        bracketed.listener_rules[0].route(Some("[::1]:8081")),
        Some("a")
    );
}

#[test]
fn listener_mistakes_name_their_field() {
    let l = |fields: &str| {
        client(&format!(
            r#""listeners": [{{"address": "127.0.0.1:8081", {fields}}}]"#
        ))
    };
    let cases = [
        (client(r#""listen": []"#).map(|_| ()), "listen"),
        (
            l(r#""routes": [{"host": "a", "service": "a"}]"#).map(|_| ()),
            "listeners[0].routes[0].host",
        ),
        (
            l(r#""routes": [{"service": "a"}, {"service": "b"}]"#).map(|_| ()),
            "listeners[0].routes[0].host",
        ),
        (
            l(r#""routes": [{"host": " ", "service": "a"}, {"service": "b"}]"#).map(|_| ()),
            "listeners[0].routes[0].host",
        ),
        (
            l(r#""routes": [{"service": "Bad Name"}]"#).map(|_| ()),
            "listeners[0].routes[0].service",
        ),
        (
            l(r#""allow_sources": ["10.0.0.1/8"]"#).map(|_| ()),
            "listeners[0].allow_sources[0]",
        ),
        (
            client(r#""listen": ["127.0.0.1:8081"], "listeners": [{"address": "127.0.0.1:8081"}]"#)
                .map(|_| ()),
            "listeners",
        ),
        (
            client(r#""listeners": [{"address": "nowhere"}]"#).map(|_| ()),
            "listeners[0].address",
        ),
    ];
    for (result, field) in cases {
        assert_eq!(field_of(result), field);
    }
}

#[test]
fn upstream_address_lists_and_balance_name_their_field() {
    let s = server(
        r#""upstream": {"addresses": ["127.0.0.1:1", "localhost:2"], "balance": "least_outstanding"}"#,
    )
    .expect("valid");
    let up = &s.services.list[0].upstream;
    assert_eq!(up.addresses.len(), 2);
    assert_eq!(
        up.addresses[1].host, "localhost",
        "a name is kept, resolved when used"
    );
    assert_eq!(up.health_check, None, "off unless configured");
    let checked =
        server(r#""upstream": {"address": "127.0.0.1:1", "health_check": {"path": "/healthz"}}"#)
            .expect("valid");
    let check = checked.services.list[0]
        .upstream
        .health_check
        .clone()
        .expect("on");
    assert_eq!(
        (
            check.path.as_str(),
            check.interval.as_millis(),
            check.timeout.as_millis()
        ),
        ("/healthz", 2000, 1000)
    );
    assert_eq!(up.balance, crate::config::Balance::LeastOutstanding);
    let cases = [
        (
            r#""upstream": {"address": "127.0.0.1:1", "addresses": ["127.0.0.1:2"]}"#,
            "upstream.addresses",
        ),
        (r#""upstream": {"addresses": []}"#, "upstream.addresses"),
        (
            r#""upstream": {"addresses": ["127.0.0.1:1", "127.0.0.1:1"]}"#,
            "upstream.addresses[1]",
        ),
        (
            r#""upstream": {"addresses": ["127.0.0.1:1", "nope"]}"#,
            "upstream.addresses[1]",
        ),
        (
            r#""upstream": {"connect_timeout_ms": 5}"#,
            "upstream.address",
        ),
        (
            r#""upstream": {"address": "127.0.0.1:1", "balance": "random"}"#,
            "upstream.balance",
        ),
    ];
    for (fields, field) in cases {
        assert_eq!(field_of(server(fields)), field, "{fields}");
    }
}

#[test]
fn a_reload_that_removes_and_moves_services_keeps_those_in_use_as_retired() {
    let up = |a: &str| format!(r#""upstream": {{"address": "{a}"}}"#);
    let old = server(&format!(
        r#"{}, "services": [{{"name": "orders", {}}}, {{"name": "billing", {}}}]"#,
        up("127.0.0.1:1"),
        up("127.0.0.1:2"),
        up("127.0.0.1:3")
    ))
    .expect("valid")
    .services;
    let new = server(&format!(
        r#""services": [{{"name": "search", {}}}, {{"name": "orders", {}}}]"#,
        up("127.0.0.1:4"),
        up("127.0.0.1:5")
    ))
    .expect("valid")
    .services;
    // default (0) is no longer used, orders (1) is kept, billing (2) still has requests.
    let (merged, moved) = old.merged_for_reload(&new, |i| i == 2);
    let names: Vec<(&str, bool)> = merged
        .list
        .iter()
        .map(|s| (s.name.as_str(), s.retired))
        .collect();
    assert_eq!(
        names,
        [("search", false), ("orders", false), ("billing", true)]
    );
    assert_eq!(moved, [None, Some(1), Some(2)]);
    assert_eq!(
        merged.find(Some("billing")),
        None,
        "no new request reaches a retired service"
    );
    assert_eq!(merged.find(Some("orders")), Some(1));
    assert_eq!(
        merged.find(None),
        None,
        "the new file has no default service"
    );
    assert_eq!(
        merged.list[1].upstream.addresses[0].port, 5,
        "orders takes its new address"
    );
    // A later reload drops the retired service once nothing uses it.
    let (again, moved) = merged.merged_for_reload(&new, |_| false);
    assert_eq!(again.list.len(), 2);
    assert_eq!(moved, [Some(0), Some(1), None]);
}

#[test]
fn connect_to_lists_exact_destinations_per_service_and_for_the_top_level_upstream() {
    let s = server(
        r#""upstream": {"address": "127.0.0.1:8080"}, "connect_to": ["DB.internal:5432", "[::1]:22"],
        "services": [{"name": "ssh", "upstream": {"address": "127.0.0.1:8081"}, "connect_to": ["10.0.0.5:22"]},
                     {"name": "web", "upstream": {"address": "127.0.0.1:8082"}}]"#,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let dest = |t: &str| crate::resolve::HostPort::parse(t).unwrap_or_else(|e| panic!("{e}"));
    let [default, ssh, web] = &s.services.list[..] else {
        panic!("three services")
    };
    assert!(
        default.connect_to.allows(&dest("db.internal:5432")),
        "names without case"
    );
    assert!(default.connect_to.allows(&dest("[::1]:22")));
    assert!(
        !default.connect_to.allows(&dest("db.internal:5433")),
        "ports exactly"
    );
    assert!(
        !default.connect_to.allows(&dest("10.0.0.5:22")),
        "another service's"
    );
    assert!(ssh.connect_to.allows(&dest("10.0.0.5:22")));
    assert!(web.connect_to.is_empty(), "off by default");
}

#[test]
fn connect_to_mistakes_name_their_field() {
    let up = r#""upstream": {"address": "127.0.0.1:8080}"#.replace("8080}", "8080\"}");
    let cases = [
        (format!(r#"{up}, "connect_to": []"#), "connect_to"),
        (format!(r#"{up}, "connect_to": ["db:5432", "db"]"#), "connect_to[1]"),
        (format!(r#"{up}, "connect_to": ["db:0"]"#), "connect_to[0]"),
        (format!(r#"{up}, "connect_to": ["a b:22"]"#), "connect_to[0]"),
        (
            r#""services": [{"name": "s", "upstream": {"address": "127.0.0.1:1"}}], "connect_to": ["db:1"]"#.to_string(),
            "connect_to",
        ),
        (
            r#""services": [{"name": "s", "upstream": {"address": "127.0.0.1:1"}, "connect_to": ["db:1", "db:x"]}]"#.to_string(),
            "services[0].connect_to[1]",
        ),
    ];
    for (fields, want) in cases {
        assert_eq!(field_of(server(&fields)), want, "{fields}");
    }
}
