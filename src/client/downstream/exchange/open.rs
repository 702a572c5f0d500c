//! Sending an exchange's request head: the link its peer group takes, the 0-RTT and
//! extended-CONNECT gates, the forwarding fields shaped for the server end, link compression
//! marked, the stream opened, and the fields given back as built (a request that may be
//! repeated is sent again from them). A head the peer would refuse is answered 431, a session
//! without room leaves the exchange waiting (within `http.session_wait_ms`).

use std::sync::Arc;

use super::super::tunnel::{self, Tunnel};
use super::super::Ctx;
use super::Exchange;
use crate::bridge::answers::{self, Answer, Busy};
use crate::bridge::compression::{self, Compressor, Dictionary};
use crate::bridge::headers::forwarding;
use crate::bridge::headers::Field;
use crate::bridge::stream::{OpenRefused, SessionPort};
use crate::client::stream_routes::StreamRef;
use crate::config::CompressionPolicy;

/// What opening the stream gave: quiche's answer, and the body's compressor and dictionary to
/// keep when it opened.
struct Opening {
    opened: Result<u64, OpenRefused>,
    compressor: Option<Compressor>,
    dictionary: Option<Arc<Dictionary>>,
}

impl Exchange {
    /// The link its peer group would take now.
    pub(in crate::client::downstream) fn choose_link(&self, ctx: &Ctx<'_>) -> Option<usize> {
        let streams = &*ctx.streams;
        ctx.links
            .choose(self.peers.as_ref(), &|link| streams.on_link(link))
    }

    /// Opens the stream on the link its peer group takes now, if any. `Err` answers the
    /// client (503/502).
    pub(in crate::client::downstream) fn try_send_request(
        &mut self,
        ctx: &mut Ctx<'_>,
    ) -> Result<bool, Answer> {
        if ctx.now >= self.wait_until {
            return Err(self.unsent_answer(ctx));
        }
        let Some(link) = self.choose_link(ctx) else {
            return Ok(false);
        };
        self.link = Some(link);
        let early = ctx.early(Some(link));
        // A tunnel is never replay-safe, whatever its GET says.
        let replay_safe =
            self.tunnel.is_none() && ctx.http.early_data_methods.contains(&self.method);
        let allowed = !ctx.stopping && (!early || replay_safe);
        let http = ctx.http;
        let session = ctx.session(Some(link)).filter(|_| allowed);
        let Some(session) = session.filter(|_| self.fields.is_some()) else {
            return Ok(false);
        };
        if !self.peer_carries_tunnel(session)? {
            return Ok(false);
        }
        let Some(fields) = self.fields.take() else {
            return Ok(false);
        };
        let Some(opening) = self.open_on(session, &http.compression, fields) else {
            return Err(answers::bad_request(
                431,
                "request head larger than the peer proxy accepts",
            ));
        };
        self.opened(opening, ctx, link, early)
    }

    /// Whether the session carries this exchange's tunnel (true for anything else): false
    /// while the peer's SETTINGS trail the handshake (wait for them, within session_wait),
    /// `Err` when the peer cannot carry it.
    fn peer_carries_tunnel(&self, session: &dyn SessionPort) -> Result<bool, Answer> {
        let needs_extended = self
            .tunnel
            .as_ref()
            .is_some_and(Tunnel::needs_extended_connect);
        match session.extended_connect() {
            _ if !needs_extended => Ok(true),
            None => Ok(false),
            Some(false) => Err(tunnel::not_carried_by_peer()),
            Some(true) => Ok(true),
        }
    }

    /// Opens the request stream on `session` with `own` (the exchange's fields) shaped for its
    /// server end and marked for link compression, then gives the fields back to the exchange
    /// as built. `None` when the session would refuse the head (too large for the peer).
    fn open_on(
        &mut self,
        session: &mut dyn SessionPort,
        policy: &CompressionPolicy,
        mut own: Vec<Field>,
    ) -> Option<Opening> {
        let shaped = forwarding::shape(&mut own, session.forwarding_server(), self.forwarding);
        let dictionary = session.link_dictionary();
        let compressor = self.request_compressor(
            policy,
            session.link_compression(),
            dictionary.as_ref(),
            &own,
        );
        if let Some(c) = &compressor {
            compression::add_mark(&mut own, c);
        }
        let opened = session
            .accepts(&own)
            .then(|| session.open_request(&own, !self.has_body));
        if compressor.is_some() {
            own.pop();
        }
        shaped.undo(&mut own);
        self.fields = Some(own);
        Some(Opening {
            opened: opened?,
            compressor,
            dictionary,
        })
    }

    /// After the open: on success the exchange now has its stream (and keeps its fields to
    /// send again if it may be repeated); a session without credit or streams leaves it
    /// waiting; a failure answers 502.
    fn opened(
        &mut self,
        opening: Opening,
        ctx: &mut Ctx<'_>,
        link: usize,
        early: bool,
    ) -> Result<bool, Answer> {
        match opening.opened {
            Ok(id) => {
                if let Some(c) = opening.compressor {
                    self.request_body.compress(c);
                }
                let how = if early { " in 0-RTT" } else { "" };
                log::debug!(
                    "stream {id}: {} {} sent to the peer{how}",
                    self.method,
                    self.target
                );
                self.stream = Some(id);
                self.dictionary = opening.dictionary;
                self.blocked = None;
                let sent = self.fields.take();
                if !self.has_body && crate::bridge::is_idempotent(&self.method) {
                    self.resend = sent;
                }
                self.sent_early = early;
                self.request_done = !self.has_body;
                ctx.streams.insert(StreamRef { link, id }, ctx.key);
                ctx.links.note_request(link);
                Ok(true)
            }
            Err(OpenRefused::Credit) => {
                self.blocked = Some(Busy::Credit);
                Ok(false)
            }
            Err(OpenRefused::Streams) => {
                self.blocked = Some(Busy::Streams);
                Ok(false)
            }
            Err(OpenRefused::Failed(e)) => Err(Answer::new(
                answers::Side::Client,
                502,
                "proxy_internal_error",
                format!("cannot send the request to the peer proxy: {e}"),
            )),
        }
    }

    /// A compressor for the request body when the session negotiated link compression, its
    /// route compresses and the policy takes the body (never a tunnel's); with the session's
    /// agreed `dictionary` when there is one.
    fn request_compressor(
        &self,
        policy: &CompressionPolicy,
        negotiated: bool,
        dictionary: Option<&Arc<Dictionary>>,
        fields: &[Field],
    ) -> Option<Compressor> {
        let wanted = self.compress && self.has_body && self.tunnel.is_none();
        if !negotiated || !wanted || !policy.compresses(fields, dictionary.is_some()) {
            return None;
        }
        Compressor::with_dictionary(compression::declared_length(fields), dictionary.cloned())
    }

    /// The answer for a request whose wait for a stream ran out: the session was down, or up
    /// without room for it.
    pub(in crate::client::downstream) fn unsent_answer(&self, ctx: &Ctx<'_>) -> Answer {
        let waited = ctx.http.session_wait.as_millis();
        let usable = self.link.is_some_and(|l| ctx.links.accepts_requests(l));
        match self.blocked.filter(|_| usable) {
            Some(why) => answers::session_busy(waited, why),
            None => answers::session_unavailable(waited, &ctx.links.why_down(self.peers.as_ref())),
        }
    }
}
