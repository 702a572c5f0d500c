//! Debugging aids: `debug.qlog_dir` writes one qlog trace per connection, `SSLKEYLOGFILE`
//! writes the TLS secrets of the session (NSS key log format).

use crate::harness::tmp::TempDir;
use crate::harness::{PairBuilder, Upstream};

#[test]
fn qlog_traces_and_key_log_are_written_when_asked() {
    let up = Upstream::start();
    let dir = TempDir::new("debug_taps");
    let qlog_client = dir.join("qlog-client");
    let qlog_server = dir.join("qlog-server");
    std::fs::create_dir_all(&qlog_client).expect("mkdir");
    std::fs::create_dir_all(&qlog_server).expect("mkdir");
    let keylog = dir.join("keys.log");
    let json = |p: &std::path::Path| format!("{:?}", p.to_str().expect("utf-8 path"));
    let pair = PairBuilder::new(up.addr())
        .name("debug_taps")
        .client("debug.qlog_dir", &json(&qlog_client))
        .server("debug.qlog_dir", &json(&qlog_server))
        .env("SSLKEYLOGFILE", keylog.to_str().expect("utf-8 path"))
        .start();
    let r = pair.get("/hello");
    assert_eq!(r.status(), 200, "{r}");
    for (side, dir) in [("client", &qlog_client), ("server", &qlog_server)] {
        let traces: Vec<_> = std::fs::read_dir(dir)
            .expect("read qlog dir")
            .flatten()
            .collect();
        assert_eq!(
            traces.len(),
            1,
            "{side}: one trace per connection, got {traces:?}"
        );
        let name = traces[0].file_name().to_string_lossy().to_string();
        assert!(
            name.starts_with(side) && name.ends_with(".sqlog"),
            "{side}: trace named {name}"
        );
        let text = std::fs::read_to_string(traces[0].path()).expect("read trace");
        assert!(
            text.contains("\"serialization_format\":\"JSON-SEQ\""),
            "{side}: not a JSON-SEQ qlog: {}",
            &text[..text.len().min(300)]
        );
        assert!(
            text.contains("packet_sent"),
            "{side}: no packet events in the trace"
        );
    }
    let keys = std::fs::read_to_string(&keylog).expect("key log written");
    for label in ["CLIENT_HANDSHAKE_TRAFFIC_SECRET", "SERVER_TRAFFIC_SECRET_0"] {
        assert!(keys.contains(label), "key log lacks {label}:\n{keys}");
    }
    assert!(
        pair.client.count_log("SSLKEYLOGFILE is set") >= 1,
        "no warning about the key log"
    );
}
