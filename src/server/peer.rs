//! One client connection as the server holds it: the session, its exchanges, the IDs routed
//! to it, and until the client's address is validated, the anti-amplification budget and the
//! handshake deadline.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Instant;

use super::peer_address::{self, PeerAddress};
use crate::access::Identity;
use crate::quic::amplification::SendBudget;
use crate::quic::refusal::Refusal;
use crate::quic::session::Session;
use crate::quic::tls;

pub struct PeerConn {
    pub session: Session,
    pub streams: HashMap<u64, usize>,
    /// Client address and (once known) certificate names, for logs.
    pub client: String,
    pub addr: SocketAddr,
    /// Why our certificate check refused this client, if it did.
    pub refusal: Option<Refusal>,
    /// When the session became usable.
    pub up_since: Option<Instant>,
    pub cids: Vec<Vec<u8>>,
    /// What may be sent to the client before its address is validated.
    pub budget: SendBudget,
    /// When the handshake must be done by.
    pub handshake_deadline: Instant,
    /// The client's address, followed across NAT rebindings.
    pub peer: PeerAddress,
    /// Our address the client sends to (with several, answers leave from this one).
    pub local: SocketAddr,
    /// Who the client's certificate names, once read (see [`PeerConn::identity`]).
    identity: Option<Identity>,
}

impl PeerConn {
    pub fn new(
        session: Session,
        from: SocketAddr,
        local: SocketAddr,
        cid: Vec<u8>,
        budget: SendBudget,
        handshake_deadline: Instant,
    ) -> Self {
        PeerConn {
            session,
            streams: HashMap::new(),
            client: from.to_string(),
            addr: from,
            refusal: None,
            up_since: None,
            cids: vec![cid],
            budget,
            handshake_deadline,
            peer: PeerAddress::new(from),
            local,
            identity: None,
        }
    }

    /// Who the client's verified certificate names, read once it is available (a request in
    /// 0-RTT may come before: it then has no name, and allow lists refuse it).
    pub fn identity(&mut self) -> &Identity {
        if self.identity.is_none() {
            if let Some(cert) = self.session.conn.peer_cert() {
                if let Ok(cert) = boring::x509::X509::from_der(cert) {
                    self.identity = Some(Identity::of(&cert));
                }
            }
        }
        static NO_NAME: Identity = Identity {
            dns: Vec::new(),
            uris: Vec::new(),
            cn: None,
        };
        self.identity.as_ref().unwrap_or(&NO_NAME)
    }

    /// Logs the session once it became usable, naming the client's certificate, and notes
    /// when (spare connection IDs are issued from then on).
    pub fn announce_if_usable(&mut self, now: Instant) {
        if !self.session.take_newly_usable() {
            return;
        }
        if let Some(der) = self.session.conn.peer_cert() {
            if let Ok(cert) = boring::x509::X509::from_der(der) {
                let names = tls::certificate_names(&cert).join(",");
                self.client = format!("{} ({names})", self.client);
            }
        }
        log::info!("session established with client {}", self.client);
        self.up_since = Some(now);
    }

    /// Still in handshake (not established, not closed).
    pub fn is_handshaking(&self) -> bool {
        !self.session.conn.is_established() && !self.session.conn.is_closed()
    }

    /// When the handshake deadline applies, that deadline.
    pub fn handshake_deadline(&self) -> Option<Instant> {
        self.is_handshaking().then_some(self.handshake_deadline)
    }

    /// Feeds one datagram whose first packet is of type `ty` to the session, and marks the
    /// address validated once the handshake completed or a Handshake packet from it was
    /// processed (RFC 9000 §8.1: only a peer that read our Initial can make one).
    /// quiche sees every datagram as coming from the client's first address;
    /// [`peer_address::deliver`] follows the real one.
    pub fn receive(
        &mut self,
        data: &mut [u8],
        ty: quiche::Type,
        from: SocketAddr,
        to: SocketAddr,
        now: Instant,
    ) {
        let validated = self.budget.is_validated();
        if !validated {
            self.budget.on_received(data.len());
        }
        let processed_before = self.session.conn.stats().recv;
        self.local = to;
        peer_address::deliver(&mut self.session, &mut self.peer, data, from, to, now);
        if validated {
            return;
        }
        let conn = &self.session.conn;
        let handshake_packet =
            ty == quiche::Type::Handshake && conn.stats().recv > processed_before;
        if conn.is_established() || handshake_packet {
            self.budget.validate();
        }
    }
}
