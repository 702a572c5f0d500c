//! The `http` sections: forwarding, body and tunnel limits, link compression and its shared
//! dictionary.

use super::*;

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
