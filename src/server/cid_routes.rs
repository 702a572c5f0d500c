//! Server role: which connection each of our connection IDs leads to. A session is given
//! spare IDs once it is up (each with its stateless reset token) and the IDs its client
//! retires stop leading to it, so the table holds what the live sessions may use, however
//! often a client changes IDs.
//!
//! Sans-IO: the server's datagram routing (`routing`) and the simulated pair both keep one.

use std::collections::HashMap;

use ring::hmac;

use super::peer::PeerConn;

/// Connection IDs to connection keys.
pub struct CidRoutes {
    by_cid: HashMap<Vec<u8>, usize>,
    reset_key: hmac::Key,
    /// The length of every ID we issue (`transport.connection_id_bytes`): short headers are
    /// read with it.
    cid_len: usize,
}

impl CidRoutes {
    /// Routes for IDs of `cid_len` bytes, whose stateless reset tokens derive from
    /// `reset_key`.
    pub fn new(reset_key: hmac::Key, cid_len: usize) -> Self {
        CidRoutes {
            by_cid: HashMap::new(),
            reset_key,
            cid_len,
        }
    }

    /// The length of our connection IDs.
    pub fn cid_len(&self) -> usize {
        self.cid_len
    }

    pub fn get(&self, cid: &[u8]) -> Option<usize> {
        self.by_cid.get(cid).copied()
    }

    /// Routes `cid` (a connection's first ID) to connection `ck`.
    pub fn insert(&mut self, cid: Vec<u8>, ck: usize) {
        self.by_cid.insert(cid, ck);
    }

    /// IDs routed, all sessions together.
    pub fn len(&self) -> usize {
        self.by_cid.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_cid.is_empty()
    }

    /// The stateless reset token of one of our connection IDs: derived from the TLS key, so a
    /// restarted server resets its predecessor's sessions (RFC 9000 §10.3).
    pub fn reset_token(&self, cid: &[u8]) -> u128 {
        let tag = hmac::sign(&self.reset_key, cid);
        let mut t = [0u8; 16];
        t.copy_from_slice(&tag.as_ref()[..16]);
        u128::from_be_bytes(t)
    }

    /// Keeps the client of session `ck` supplied with spare IDs once it is up (retired ones
    /// are replaced), and stops routing the IDs it retired.
    pub fn refresh(&mut self, ck: usize, pc: &mut PeerConn) {
        if pc.up_since.is_some() {
            let spare = pc
                .session
                .issue_spare_cids(self.cid_len, |cid| self.reset_token(cid));
            for cid in spare {
                self.by_cid.insert(cid.clone(), ck);
                pc.cids.push(cid);
            }
        }
        while let Some(cid) = pc.session.conn.retired_scid_next() {
            self.by_cid.remove(cid.as_ref());
            pc.cids.retain(|c| c.as_slice() != cid.as_ref());
        }
    }

    /// Session `pc` is gone: none of its IDs leads anywhere any more.
    pub fn forget(&mut self, pc: &PeerConn) {
        for cid in &pc.cids {
            self.by_cid.remove(cid);
        }
    }
}
