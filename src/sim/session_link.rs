//! The simulated client's one session as its downstreams see it ([`Links`] with a single
//! link, 0): up once usable, never in 0-RTT, never reconnecting.

use crate::client::downstreams::Links;
use crate::config::PeerGroup;
use crate::quic::session::Session;

/// The client's one session (link 0) as its downstreams see it: up once usable, never in
/// 0-RTT.
pub(super) struct SimLink {
    pub(super) session: Session,
}

impl Links for SimLink {
    fn key_bound(&self) -> usize {
        1
    }
    fn session_mut(&mut self, link: usize) -> Option<&mut Session> {
        (link == 0).then_some(&mut self.session)
    }
    fn usable(&mut self, link: usize) -> Option<&mut Session> {
        (link == 0 && self.session.is_usable()).then_some(&mut self.session)
    }
    fn accepts_requests(&self, link: usize) -> bool {
        link == 0 && self.session.is_usable()
    }
    fn in_early_data(&self, _link: usize) -> bool {
        false
    }
    fn on_goaway(&mut self, _link: usize) {}
    fn choose(&self, _group: Option<&PeerGroup>, _load: &dyn Fn(usize) -> usize) -> Option<usize> {
        self.session.is_usable().then_some(0)
    }
    fn why_down(&self, _group: Option<&PeerGroup>) -> String {
        "simulated peer (down)".into()
    }
    fn cwnd(&self, _link: usize) -> usize {
        let paths = self.session.conn.path_stats();
        paths
            .filter(|p| p.active)
            .map(|p| p.cwnd)
            .next()
            .unwrap_or(0)
    }
}
