//! 0-RTT resumption (`tls.early_data`): the link keeps the newest session ticket the server
//! gave it and offers it to the next attempt, whose requests may then go before the handshake
//! completes.

/// BoringSSL's `ssl_early_data_accepted` reason.
const EARLY_DATA_ACCEPTED: u32 = 2;

/// The session ticket to resume with, when resumption is on.
pub struct Resumption {
    enabled: bool,
    ticket: Option<Vec<u8>>,
}

impl Resumption {
    pub fn new(enabled: bool) -> Self {
        Resumption {
            enabled,
            ticket: None,
        }
    }

    /// Offers the last session ticket for resumption (0-RTT), when enabled; true when `conn`
    /// took it.
    pub fn offer(&self, conn: &mut quiche::Connection) -> bool {
        let Some(ticket) = self.ticket.as_deref().filter(|_| self.enabled) else {
            return false;
        };
        match conn.set_session(ticket) {
            Ok(()) => true,
            Err(e) => {
                log::debug!("session ticket not usable: {e}");
                false
            }
        }
    }

    /// Keeps the newest session ticket the server gave us on `conn`.
    pub fn keep(&mut self, conn: &quiche::Connection) {
        if let Some(t) = conn
            .session()
            .filter(|t| self.ticket.as_deref() != Some(*t))
        {
            self.ticket = Some(t.to_vec());
        }
    }
}

/// How the handshake went, for the "session established" line.
pub fn note(conn: &quiche::Connection) -> &'static str {
    match (conn.is_resumed(), conn.early_data_reason()) {
        (true, EARLY_DATA_ACCEPTED) => ", resumed with 0-RTT accepted",
        (true, _) => ", resumed (no 0-RTT)",
        (false, _) => "",
    }
}
