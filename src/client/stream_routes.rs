//! Which downstream connection each open request stream belongs to, by (link, stream ID):
//! stream IDs are per session, and the client has a session per peer. Also counts the
//! streams open on each link (the `spread` policy's load, and when a going-away session may
//! close).

use std::collections::HashMap;

/// A request stream: the link (session) it is on and its ID there.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct StreamRef {
    pub link: usize,
    pub id: u64,
}

#[derive(Debug, Default)]
pub struct StreamRoutes {
    owner: HashMap<StreamRef, usize>,
    per_link: HashMap<usize, usize>,
}

impl StreamRoutes {
    /// Stream `s` belongs to connection `key`.
    pub fn insert(&mut self, s: StreamRef, key: usize) {
        if self.owner.insert(s, key).is_none() {
            *self.per_link.entry(s.link).or_default() += 1;
        }
    }

    pub fn remove(&mut self, s: StreamRef) {
        if self.owner.remove(&s).is_some() {
            if let Some(n) = self.per_link.get_mut(&s.link) {
                *n -= 1;
                if *n == 0 {
                    self.per_link.remove(&s.link);
                }
            }
        }
    }

    pub fn get(&self, s: StreamRef) -> Option<usize> {
        self.owner.get(&s).copied()
    }

    /// Streams open on every link.
    pub fn len(&self) -> usize {
        self.owner.len()
    }

    pub fn is_empty(&self) -> bool {
        self.owner.is_empty()
    }

    /// Every open stream.
    pub fn refs(&self) -> Vec<StreamRef> {
        self.owner.keys().copied().collect()
    }

    /// Streams open on `link`.
    pub fn on_link(&self, link: usize) -> usize {
        self.per_link.get(&link).copied().unwrap_or(0)
    }

    /// The connections with a stream on `link`.
    pub fn owners_on(&self, link: usize) -> Vec<usize> {
        self.owner
            .iter()
            .filter(|(s, _)| s.link == link)
            .map(|(_, k)| *k)
            .collect()
    }

    /// Forgets every stream of `link` (its session died): their connections.
    pub fn take_link(&mut self, link: usize) -> Vec<usize> {
        let owners = self.owners_on(link);
        self.owner.retain(|s, _| s.link != link);
        self.per_link.remove(&link);
        owners
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_are_counted_per_link_and_taken_with_their_link() {
        let mut r = StreamRoutes::default();
        let s = |link, id| StreamRef { link, id };
        r.insert(s(0, 0), 7);
        r.insert(s(1, 0), 8);
        r.insert(s(1, 4), 9);
        r.insert(s(1, 4), 9);
        assert_eq!((r.on_link(0), r.on_link(1), r.len()), (1, 2, 3));
        assert_eq!(
            r.get(s(1, 0)),
            Some(8),
            "the same ID on two links is two streams"
        );
        r.remove(s(1, 0));
        r.remove(s(1, 0));
        assert_eq!(r.on_link(1), 1);
        assert_eq!(r.take_link(1), vec![9]);
        assert_eq!((r.on_link(1), r.len(), r.get(s(0, 0))), (0, 1, Some(7)));
    }
}
