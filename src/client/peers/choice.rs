//! The choice of a link for a new request: a group's policy among its healthy links, else
//! among its suspect ones (up but silent: better than waiting), never a link that is down.

use crate::config::Policy;

/// How a link can serve a new request right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    Healthy,
    /// Takes requests but is not known to be alive: up but silent beyond what an alive peer
    /// shows, or an attempt in 0-RTT whose peer has not answered yet.
    Suspect,
    /// No session that takes new requests.
    Down,
}

/// The link for a new request among `candidates` (in the group's order): the policy's choice
/// among the healthy ones, else among the suspect ones; `None` when all are down.
pub fn pick(
    candidates: &[(usize, Health)],
    policy: Policy,
    load: &dyn Fn(usize) -> usize,
) -> Option<usize> {
    let among = |wanted: Health| {
        let mut keys = candidates
            .iter()
            .filter(|(_, h)| *h == wanted)
            .map(|(k, _)| *k);
        match policy {
            Policy::Failover => keys.next(),
            Policy::Spread => keys.min_by_key(|k| load(*k)),
        }
    };
    among(Health::Healthy).or_else(|| among(Health::Suspect))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn none(_: usize) -> usize {
        0
    }

    #[test]
    fn failover_takes_the_first_healthy_peer_in_order() {
        use Health::*;
        let c = [(3, Down), (1, Suspect), (7, Healthy), (2, Healthy)];
        assert_eq!(pick(&c, Policy::Failover, &none), Some(7));
        let c = [(3, Down), (1, Suspect), (2, Suspect)];
        assert_eq!(
            pick(&c, Policy::Failover, &none),
            Some(1),
            "a suspect peer beats waiting"
        );
        assert_eq!(pick(&[(3, Down)], Policy::Failover, &none), None);
        assert_eq!(pick(&[], Policy::Spread, &none), None);
    }

    #[test]
    fn spread_takes_the_least_loaded_healthy_peer() {
        use Health::*;
        let load = |k: usize| [5, 2, 2, 0][k];
        let c = [(0, Healthy), (1, Healthy), (2, Healthy), (3, Suspect)];
        assert_eq!(
            pick(&c, Policy::Spread, &load),
            Some(1),
            "fewest in flight, the earlier on a tie; the idle suspect one is not taken"
        );
        let c = [(0, Down), (3, Suspect), (1, Suspect)];
        assert_eq!(pick(&c, Policy::Spread, &load), Some(3));
    }
}
