//! The forwarding fields' constant parts written by the server end (issue #15 item 3).
//!
//! The client end adds `Forwarded: for=ADDR;proto=http` and `Via: 1.1 ptproxy` to each request
//! (`http.forwarded`, `http.via`), but of these only the caller's address is news: the rest is the same
//! for every request of a session, about 22 of the ~120 bytes a small request costs on the link.
//! So the two ends agree, by a private HTTP/3 setting, that the server end writes them:
//!
//! ```text
//! client SETTINGS: SETTING_FORWARDING = 1 | via << 1 | proto << 2  (what it leaves to the server)
//! server SETTINGS: SETTING_FORWARDING = 1                          (it completes requests)
//! request, the usual case:  forwarded: for=ADDR          -> upstream: Forwarded: for=ADDR;proto=http
//!                           (no via)                                 Via: 1.1 ptproxy
//! request, the rare case:   full fields + ptproxy-forwarding: complete -> upstream: as sent
//! ```
//!
//! The rare case is a request whose fields differ from what the session announced: an
//! HTTP/1.0 caller (its `Via` says 1.0), or `http.forwarding` changed by a reload after the
//! session began (settings are fixed per session). An older peer announces nothing, and the client then sends every field
//! itself as before. Callers' copies of [`MARK_FIELD`] are removed at the client end
//! (`super::request_to_h3`), so only ptproxy writes it. The upstream sees the same fields
//! either way.

use quiche::h3::{Header as H3Header, NameValue};

use super::Field;
use crate::h1::Header;

/// The private HTTP/3 setting (unknown settings are ignored, RFC 9114 §7.2.4).
pub const SETTING_FORWARDING: u64 = 0x7074_6677;
/// The field that says a request's forwarding fields are complete as sent.
pub const MARK_FIELD: &str = "ptproxy-forwarding";
const MARK_VALUE: &[u8] = b"complete";
/// The `Via` entry of an HTTP/1.1 caller's request.
pub const VIA_11: &[u8] = b"1.1 ptproxy";
/// The end of the client's `Forwarded` element.
pub const PROTO: &[u8] = b";proto=http";

/// What the server end writes into each request of a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Completion {
    /// Append `Via: 1.1 ptproxy`.
    pub via: bool,
    /// End the last `Forwarded` element with `;proto=http`.
    pub proto: bool,
}

impl Completion {
    /// What a client with these `http.forwarding` settings leaves to the server end.
    pub fn left_by(f: &crate::config::Forwarding) -> Self {
        Completion {
            via: f.via,
            proto: f.forwarded,
        }
    }

    /// This end's setting: a client says what it leaves to the server, a server only that it
    /// completes requests (`Completion::default()`).
    pub fn announcement(self) -> (u64, u64) {
        (
            SETTING_FORWARDING,
            1 | (self.via as u64) << 1 | (self.proto as u64) << 2,
        )
    }

    /// What the peer announced, if it speaks this scheme.
    pub fn announced_by(settings: Option<&[(u64, u64)]>) -> Option<Completion> {
        let (_, v) = settings?.iter().find(|(id, _)| *id == SETTING_FORWARDING)?;
        (v & 1 == 1).then_some(Completion {
            via: v & 2 != 0,
            proto: v & 4 != 0,
        })
    }
}

/// The server end of a session, as the client end sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerEnd {
    /// Its SETTINGS did not arrive yet (a request in 0-RTT): it may complete requests.
    Unknown,
    /// It announced nothing: an older server end, which takes every field as it is.
    Older,
    /// It completes requests; the value is what this end announced it leaves to it.
    Completes(Completion),
}

/// Client end: shapes the request's fields, built complete, for `server`, in place (no copy
/// of the fields per send): what the server end writes is taken out, or the request is marked
/// complete (to a server end that may complete it). `wanted` is what of them a server end would
/// write the same (`None` for a request they cannot describe, an HTTP/1.0 caller's). The
/// fields are kept for a later send on another session: [`Shaped::undo`] gives them back
/// complete.
pub fn shape(fields: &mut Vec<Field>, server: ServerEnd, wanted: Option<Completion>) -> Shaped {
    let mut shaped = Shaped::default();
    match server {
        ServerEnd::Older => {}
        ServerEnd::Completes(announced) if wanted == Some(announced) => {
            if announced.proto {
                shaped.proto_at = take_proto(fields);
            }
            if announced.via {
                shaped.via_at = fields
                    .iter()
                    .rposition(|f| f.name() == b"via" && f.value() == VIA_11);
                if let Some(i) = shaped.via_at {
                    fields.remove(i);
                }
            }
        }
        ServerEnd::Unknown | ServerEnd::Completes(_) => {
            fields.push(Field::fixed(MARK_FIELD.as_bytes(), MARK_VALUE));
            shaped.marked = true;
        }
    }
    shaped
}

/// Cuts `;proto=http` from the last `Forwarded` field (this end's); its index.
fn take_proto(fields: &mut [Field]) -> Option<usize> {
    let i = fields.iter().rposition(|f| f.name() == b"forwarded")?;
    let value = fields[i].value_mut();
    let kept = value.len().checked_sub(PROTO.len())?;
    if !value.ends_with(PROTO) {
        return None;
    }
    value.truncate(kept);
    Some(i)
}

/// What [`shape`] changed in a request's fields, to undo.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub struct Shaped {
    /// Where this end's `Via` was taken out.
    via_at: Option<usize>,
    /// Which `Forwarded` field lost its `;proto=http`.
    proto_at: Option<usize>,
    /// The mark was appended.
    marked: bool,
}

impl Shaped {
    /// Gives `fields` back as they were built (they were shaped by [`shape`] into this).
    pub fn undo(self, fields: &mut Vec<Field>) {
        if self.marked {
            fields.pop();
        }
        if let Some(i) = self.via_at {
            fields.insert(i, Field::fixed(b"via", VIA_11));
        }
        if let Some(i) = self.proto_at {
            fields[i].value_mut().extend_from_slice(PROTO);
        }
    }
}

/// Server end: writes into the upstream head what the client left to it (`peer`: what the
/// client announced), unless the request's fields are marked complete.
pub fn complete(headers: &mut Vec<Header>, list: &[H3Header], peer: Option<Completion>) {
    let marked = list.iter().any(|h| h.name() == MARK_FIELD.as_bytes());
    let Some(c) = peer.filter(|_| !marked) else {
        return;
    };
    if c.proto {
        if let Some(h) = headers.iter_mut().rev().find(|h| h.name == "forwarded") {
            h.value.extend_from_slice(PROTO);
        }
    }
    if c.via {
        headers.push(Header {
            name: "via".into(),
            value: VIA_11.to_vec(),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BOTH: Completion = Completion {
        via: true,
        proto: true,
    };

    fn client_fields() -> Vec<Field> {
        vec![
            Field::fixed(b":method", b"GET"),
            Field::fixed(b"via", b"1.0 proxy-a"),
            Field::named(b"forwarded", b"for=10.0.0.1;proto=http".to_vec()),
            Field::named(b"forwarded", b"for=127.0.0.1;proto=http".to_vec()),
            Field::fixed(b"via", VIA_11),
        ]
    }

    fn pairs(fields: &[Field]) -> Vec<(String, String)> {
        fields
            .iter()
            .map(|f| {
                (
                    String::from_utf8_lossy(f.name()).into_owned(),
                    String::from_utf8_lossy(f.value()).into_owned(),
                )
            })
            .collect()
    }

    fn h3(fields: &[Field]) -> Vec<H3Header> {
        fields
            .iter()
            .map(|f| H3Header::new(f.name(), f.value()))
            .collect()
    }

    /// What the server end hands upstream for `sent` (pseudo-headers left as they are).
    fn upstream(sent: &[Field], peer: Option<Completion>) -> Vec<(String, String)> {
        let mut headers: Vec<Header> = sent
            .iter()
            .filter(|f| f.name() != MARK_FIELD.as_bytes())
            .map(|f| Header {
                name: String::from_utf8_lossy(f.name()).into_owned(),
                value: f.value().to_vec(),
            })
            .collect();
        complete(&mut headers, &h3(sent), peer);
        headers
            .into_iter()
            .map(|h| (h.name, String::from_utf8_lossy(&h.value).into_owned()))
            .collect()
    }

    fn sorted(mut v: Vec<(String, String)>) -> Vec<(String, String)> {
        v.sort();
        v
    }

    #[test]
    fn the_settings_round_trip_and_an_older_peer_speaks_none() {
        for c in [
            Completion::default(),
            BOTH,
            Completion {
                via: true,
                proto: false,
            },
        ] {
            let s = [(0x33, 1), c.announcement()];
            assert_eq!(Completion::announced_by(Some(&s)), Some(c));
        }
        assert_eq!(Completion::announced_by(Some(&[(0x33, 1)])), None);
        assert_eq!(Completion::announced_by(None), None);
        assert_eq!(
            Completion::announced_by(Some(&[(SETTING_FORWARDING, 6)])),
            None,
            "without bit 0 the value is not this scheme's"
        );
    }

    /// `fields` as sent to `server`, and checks that undoing gives them back as built.
    fn for_server_end(
        fields: &[Field],
        server: ServerEnd,
        wanted: Option<Completion>,
    ) -> Vec<Field> {
        let mut own = fields.to_vec();
        let shaped = shape(&mut own, server, wanted);
        let sent = own.clone();
        shaped.undo(&mut own);
        assert_eq!(pairs(&own), pairs(fields), "undone: the fields as built");
        sent
    }

    #[test]
    fn left_to_the_server_the_upstream_gets_the_same_fields() {
        let full = client_fields();
        let sent = for_server_end(&full, ServerEnd::Completes(BOTH), Some(BOTH));
        assert_eq!(
            pairs(&sent),
            vec![
                (":method".into(), "GET".into()),
                ("via".into(), "1.0 proxy-a".into()),
                ("forwarded".into(), "for=10.0.0.1;proto=http".into()),
                ("forwarded".into(), "for=127.0.0.1".into()),
            ],
            "only this end's own Via and proto leave the link"
        );
        assert_eq!(
            sorted(upstream(&sent, Some(BOTH))),
            sorted(pairs(&full)),
            "the server writes them back"
        );
    }

    #[test]
    fn a_request_unlike_the_announcement_goes_complete_and_marked() {
        let mut full = client_fields();
        full[4] = Field::fixed(b"via", b"1.0 ptproxy"); // an HTTP/1.0 caller
        let completes = ServerEnd::Completes(BOTH);
        let sent = for_server_end(&full, completes, None);
        assert_eq!(sent.last().map(|f| f.name()), Some(MARK_FIELD.as_bytes()));
        assert_eq!(
            upstream(&sent, Some(BOTH)),
            pairs(&full),
            "nothing added twice"
        );
        let sent = for_server_end(&full, completes, Some(Completion::default()));
        assert_eq!(upstream(&sent, Some(BOTH)), pairs(&full), "config changed");
        let full = client_fields();
        let sent = for_server_end(&full, ServerEnd::Unknown, Some(BOTH));
        assert_eq!(
            upstream(&sent, Some(BOTH)),
            pairs(&full),
            "sent before the server's SETTINGS (0-RTT): complete and marked"
        );
    }

    #[test]
    fn nothing_is_written_for_a_peer_that_left_nothing() {
        let full = client_fields();
        assert_eq!(upstream(&full, None), pairs(&full), "an older client");
        let sent = for_server_end(&full, ServerEnd::Older, Some(BOTH));
        assert_eq!(pairs(&sent), pairs(&full), "an older server: as built");
        let none = Completion::default();
        let sent = for_server_end(&full, ServerEnd::Completes(none), Some(none));
        assert_eq!(pairs(&sent), pairs(&full));
        assert_eq!(upstream(&sent, Some(none)), pairs(&full));
    }
}
