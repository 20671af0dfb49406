//! KBS sessions: one per `/auth`, named by the `kbs-session-id` cookie.
//!
//! A session starts `Challenged` with a fresh nonce. The first `/attest` on it
//! consumes the nonce (state `Verifying`, then `Attested` or `Failed`): a nonce is
//! never accepted twice. Sessions expire `ttl` after `/auth`; expired ones are
//! refused and purged.
//!
//! The table is bounded and no single peer can exhaust it. `/auth` is
//! unauthenticated, so anyone can create sessions; the table therefore never
//! refuses one for lack of room while it can make room fairly:
//!
//! - each peer ([`PeerKey`]: its IPv4 address, or its IPv6 /64) holds at most
//!   `max_per_peer` sessions; a peer at its quota that asks for another loses its
//!   own oldest session (a flood only churns the flooder's own sessions);
//! - when the whole table is full, the oldest session of the peer holding the
//!   most sessions is evicted.
//!
//! Every operation is amortized O(1) except choosing the largest peer when the
//! table is full (O(peers)). Expiry is a queue in creation order (the lifetime
//! is the same for every session).

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use base64::{engine::general_purpose::STANDARD, engine::general_purpose::URL_SAFE_NO_PAD, Engine};
use ironclaw_enclave::tee::TeeKind;
use rand_core::Rng;
use sha2::Digest;

use crate::error::ApiError;
use crate::evidence::Claims;

/// The unit of fairness: who a connection comes from. IPv6 peers are grouped by
/// /64 (one host usually holds a whole /64); requests without a network peer
/// (in-process callers) share one key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PeerKey {
    /// An IPv4 address (IPv4-mapped IPv6 addresses included).
    V4([u8; 4]),
    /// The /64 prefix of an IPv6 address.
    V6([u8; 8]),
    /// No network peer.
    Local,
}

impl PeerKey {
    /// The key of `ip`.
    pub fn of_ip(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(v4) => PeerKey::V4(v4.octets()),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => PeerKey::V4(v4.octets()),
                None => {
                    let mut p = [0u8; 8];
                    p.copy_from_slice(&v6.octets()[..8]);
                    PeerKey::V6(p)
                }
            },
        }
    }

    /// The key of a peer given as `ip:port` text (what requests carry).
    pub fn of(peer: Option<&str>) -> Self {
        match peer.and_then(|p| p.parse::<SocketAddr>().ok()) {
            Some(a) => Self::of_ip(a.ip()),
            None => PeerKey::Local,
        }
    }
}

impl std::fmt::Display for PeerKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PeerKey::V4(o) => write!(f, "{}", std::net::Ipv4Addr::from(*o)),
            PeerKey::V6(p) => {
                let mut full = [0u8; 16];
                full[..8].copy_from_slice(p);
                write!(f, "{}/64", std::net::Ipv6Addr::from(full))
            }
            PeerKey::Local => f.write_str("local"),
        }
    }
}

/// What the audit log records for a session id: the first 16 bytes of its
/// SHA-256, hex. The id itself is a bearer credential while the session lives,
/// and cookie values sent by anyone are attacker-chosen text.
pub fn audit_ref(id: &str) -> String {
    let d = sha2::Sha256::digest(id.as_bytes());
    hex::encode(&d[..16])
}

/// Session state.
#[derive(Debug)]
pub enum SessionState {
    /// Challenged, nonce unused.
    Challenged,
    /// Nonce consumed, evidence being verified.
    Verifying,
    /// Attestation failed; the session is dead.
    Failed,
    /// Attested: resources may be requested.
    Attested {
        /// What was verified.
        claims: Box<Claims>,
        /// The enclave's ephemeral key (resources are encrypted to it).
        tee_pubkey: crate::tee_key::TeeKey,
    },
}

/// One session.
#[derive(Debug)]
pub struct Session {
    /// The TEE kind from `/auth`.
    pub tee: TeeKind,
    /// The challenge nonce.
    pub nonce: String,
    /// Expiry.
    pub expires: Instant,
    /// State.
    pub state: SessionState,
    /// Who asked for it.
    pub peer: PeerKey,
}

/// The session table.
#[derive(Debug)]
pub struct Sessions {
    map: HashMap<String, Session>,
    /// Every session id in creation (= expiry) order. Entries whose session was
    /// evicted stay until they reach the front.
    order: VecDeque<(Instant, String)>,
    /// Each peer's live session ids, oldest first (exact: sessions only leave
    /// from the front, by expiry or eviction).
    by_peer: HashMap<PeerKey, VecDeque<String>>,
    ttl: Duration,
    max: usize,
    max_per_peer: usize,
}

impl Sessions {
    /// An empty table: at most `max` sessions, at most `max_per_peer` per peer
    /// (both at least 1).
    pub fn new(ttl: Duration, max: usize, max_per_peer: usize) -> Self {
        Sessions {
            map: HashMap::new(),
            order: VecDeque::new(),
            by_peer: HashMap::new(),
            ttl,
            max: max.max(1),
            max_per_peer: max_per_peer.max(1),
        }
    }

    /// Session lifetime.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// Removes every session that has expired at `now`.
    fn purge(&mut self, now: Instant) {
        while let Some((expires, _)) = self.order.front() {
            if *expires > now {
                break;
            }
            let Some((_, id)) = self.order.pop_front() else {
                break;
            };
            if let Some(s) = self.map.remove(&id) {
                self.pop_peer_front(s.peer, &id);
            }
        }
    }

    /// Drops `id` from the front of `peer`'s queue (where an expiring or evicted
    /// session always is).
    fn pop_peer_front(&mut self, peer: PeerKey, id: &str) {
        if let Some(q) = self.by_peer.get_mut(&peer) {
            if q.front().map(String::as_str) == Some(id) {
                q.pop_front();
            } else if let Some(pos) = q.iter().position(|x| x == id) {
                // Not reached (removals are from the front); kept exact anyway.
                q.remove(pos);
            }
            if q.is_empty() {
                self.by_peer.remove(&peer);
            }
        }
    }

    /// Evicts the oldest session of `peer`.
    fn evict_oldest_of(&mut self, peer: PeerKey) -> bool {
        let Some(id) = self.by_peer.get_mut(&peer).and_then(VecDeque::pop_front) else {
            return false;
        };
        if self.by_peer.get(&peer).is_some_and(VecDeque::is_empty) {
            self.by_peer.remove(&peer);
        }
        self.map.remove(&id);
        true
    }

    /// Creates a session for `peer`; returns (id, nonce). Makes room by evicting
    /// the peer's own oldest session at its quota, or the largest peer's oldest
    /// when the table is full.
    pub fn create(&mut self, tee: TeeKind, peer: PeerKey) -> Result<(String, String), ApiError> {
        let now = Instant::now();
        self.purge(now);
        if self.by_peer.get(&peer).map_or(0, VecDeque::len) >= self.max_per_peer {
            self.evict_oldest_of(peer);
        }
        if self.map.len() >= self.max {
            let largest = self
                .by_peer
                .iter()
                .max_by_key(|(_, q)| q.len())
                .map(|(p, _)| *p);
            if !largest.is_some_and(|p| self.evict_oldest_of(p)) {
                return Err(ApiError::TooManySessions);
            }
        }
        let mut rng = crate::rng();
        let mut id = [0u8; 32];
        rng.fill_bytes(&mut id);
        let mut nonce = [0u8; 32];
        rng.fill_bytes(&mut nonce);
        let id = URL_SAFE_NO_PAD.encode(id);
        let nonce = STANDARD.encode(nonce);
        let expires = now + self.ttl;
        self.map.insert(
            id.clone(),
            Session {
                tee,
                nonce: nonce.clone(),
                expires,
                state: SessionState::Challenged,
                peer,
            },
        );
        self.order.push_back((expires, id.clone()));
        self.by_peer.entry(peer).or_default().push_back(id.clone());
        // Evicted sessions leave stale entries in `order` until they would have
        // expired; a flood evicting its own sessions at line rate would grow it
        // without bound. Compact it when it holds twice the table (amortized O(1)).
        if self.order.len() > 2 * self.max + 1024 {
            let map = &self.map;
            self.order.retain(|(_, id)| map.contains_key(id));
        }
        Ok((id, nonce))
    }

    /// The live session `id`; an expired one is removed and refused.
    pub fn get_mut(&mut self, id: &str) -> Result<&mut Session, ApiError> {
        let expired = match self.map.get(id) {
            None => return Err(ApiError::UnknownSession),
            Some(s) => s.expires <= Instant::now(),
        };
        if expired {
            self.purge(Instant::now());
            self.map.remove(id);
            return Err(ApiError::SessionExpired);
        }
        self.map.get_mut(id).ok_or(ApiError::UnknownSession)
    }

    /// Number of sessions held.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Sessions held for `peer`.
    pub fn peer_len(&self, peer: PeerKey) -> usize {
        self.by_peer.get(&peer).map_or(0, VecDeque::len)
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ironclaw_enclave::tee::TeeKind;

    fn peer(n: u8) -> PeerKey {
        PeerKey::V4([10, 0, 0, n])
    }

    #[test]
    fn a_flooding_peer_only_evicts_its_own_sessions() {
        let mut s = Sessions::new(Duration::from_secs(300), 100, 10);
        let (victim, _) = s.create(TeeKind::KVM, peer(1)).unwrap();
        for _ in 0..10_000 {
            s.create(TeeKind::KVM, peer(2)).unwrap();
        }
        assert_eq!(s.peer_len(peer(2)), 10);
        assert!(s.get_mut(&victim).is_ok());
        assert_eq!(s.len(), 11);
        // The expiry queue does not keep the 9,990 evicted sessions.
        assert!(s.order.len() <= 2 * 100 + 1024 + 1, "{}", s.order.len());
    }

    #[test]
    fn a_full_table_evicts_from_the_largest_peer() {
        let mut s = Sessions::new(Duration::from_secs(300), 20, 15);
        let (victim, _) = s.create(TeeKind::KVM, peer(1)).unwrap();
        for _ in 0..1000 {
            s.create(TeeKind::KVM, peer(2)).unwrap();
        }
        assert_eq!(s.peer_len(peer(2)), 15, "its quota");
        for _ in 0..1000 {
            s.create(TeeKind::KVM, peer(3)).unwrap();
        }
        // Full: the two flooders share what the victim does not hold.
        assert_eq!(s.len(), 20);
        assert!(
            s.get_mut(&victim).is_ok(),
            "the small peer kept its session"
        );
        let (a, b) = (s.peer_len(peer(2)), s.peer_len(peer(3)));
        assert_eq!(a + b, 19);
        assert!(a.abs_diff(b) <= 1, "{a} {b}");
    }

    #[test]
    fn expired_sessions_leave_in_order_and_ids_are_refused() {
        let mut s = Sessions::new(Duration::from_millis(30), 100, 100);
        let (a, _) = s.create(TeeKind::KVM, peer(1)).unwrap();
        std::thread::sleep(Duration::from_millis(40));
        let (b, _) = s.create(TeeKind::KVM, peer(1)).unwrap();
        assert!(matches!(s.get_mut(&a), Err(ApiError::UnknownSession)));
        assert!(s.get_mut(&b).is_ok());
        assert_eq!((s.len(), s.peer_len(peer(1))), (1, 1));
        std::thread::sleep(Duration::from_millis(40));
        assert!(matches!(s.get_mut(&b), Err(ApiError::SessionExpired)));
        assert_eq!((s.len(), s.peer_len(peer(1))), (0, 0));
        assert!(s.by_peer.is_empty());
    }

    #[test]
    fn peer_keys_group_ipv6_by_64() {
        let a = PeerKey::of(Some("[2001:db8:1:2:aaaa::1]:443"));
        let b = PeerKey::of(Some("[2001:db8:1:2:bbbb::9]:80"));
        let c = PeerKey::of(Some("[2001:db8:1:3::1]:80"));
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_eq!(
            PeerKey::of(Some("[::ffff:10.1.2.3]:5")),
            PeerKey::of(Some("10.1.2.3:6"))
        );
        assert_eq!(PeerKey::of(None), PeerKey::Local);
        assert_eq!(PeerKey::of(Some("garbage")), PeerKey::Local);
    }

    #[test]
    fn audit_ref_hides_the_id() {
        let r = audit_ref("secret-session-id");
        assert_eq!(r.len(), 32);
        assert!(!r.contains("secret"));
        assert_eq!(r, audit_ref("secret-session-id"));
        assert_ne!(r, audit_ref("secret-session-ie"));
    }
}
