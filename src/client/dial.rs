//! How the client starts a QUIC connection to the peer, the same for the proxy's session
//! attempts ([`super::link::PeerLink`]) and for `--check --connect` ([`super::probe`]): from the
//! wildcard address of the peer's family, with a random source connection ID, and either SNI
//! (the server is named) or the server's IP address pinned as the name its certificate must
//! carry (the server is given as an address).

use std::error::Error;
use std::net::{IpAddr, SocketAddr};

use crate::quic::{self, tls};

/// The local address a socket to `peer` binds: any address of the same family, any port.
pub fn wildcard(peer: SocketAddr) -> SocketAddr {
    if peer.is_ipv4() {
        SocketAddr::from(([0, 0, 0, 0], 0))
    } else {
        SocketAddr::from(([0u16; 8], 0))
    }
}

/// A new client connection from `local` to `peer`, checked against `server_name`; our
/// connection IDs are `cid_len` bytes.
pub fn connect(
    server_name: &str,
    local: SocketAddr,
    peer: SocketAddr,
    config: &mut quiche::Config,
    cid_len: usize,
) -> Result<quiche::Connection, Box<dyn Error>> {
    let scid = quic::new_cid(cid_len);
    let scid = quiche::ConnectionId::from_ref(&scid);
    let ip: Option<IpAddr> = server_name.parse().ok();
    let sni = ip.is_none().then_some(server_name);
    let mut conn = quiche::connect(sni, &scid, local, peer, config)?;
    if let Some(ip) = ip {
        tls::pin_server_ip(&mut conn, ip)?;
    }
    Ok(conn)
}
