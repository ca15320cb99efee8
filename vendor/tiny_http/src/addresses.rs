//! devicegate patch: how many connections each client address holds open, so that one
//! address cannot take every connection thread (a few hundred connections each sending a
//! header line now and then did, upstream).
//!
//! Addresses are grouped as devicegate groups them for every per-address rule
//! (`devicegate::protocol::network::address_key`): an IPv4 address by itself, an IPv6
//! address by its /64 (one subscriber's usual allocation, RFC 6177), and an IPv4-mapped
//! IPv6 address (`::ffff:192.0.2.1`) as the IPv4 address it is.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::{Arc, Mutex, MutexGuard};

/// The open connections per address group, and the most one group may hold.
pub(crate) struct Addresses {
    limit: usize,
    open: Mutex<HashMap<IpAddr, usize>>,
}

/// One open connection's place in its group's count, given back on drop (whichever way
/// the connection ends: closed by either side, parked and timed out, failed, or a thread
/// unwinding from a panic).
pub(crate) struct AddressSlot {
    addresses: Arc<Addresses>,
    group: IpAddr,
}

impl Addresses {
    /// `limit`: the most connections one address group may hold open (`usize::MAX`: no
    /// limit, nothing is counted).
    pub(crate) fn new(limit: usize) -> Arc<Addresses> {
        Arc::new(Addresses {
            limit,
            open: Mutex::new(HashMap::new()),
        })
    }

    /// A place for a new connection from `ip`, or `Err` when its group is at the limit.
    /// `Ok(None)` when nothing is counted.
    pub(crate) fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<Option<AddressSlot>, IpAddr> {
        if self.limit == usize::MAX {
            return Ok(None);
        }
        let group = address_group(ip);
        let mut open = self.lock();
        let count = open.entry(group).or_insert(0);
        if *count >= self.limit {
            return Err(group);
        }
        *count += 1;
        Ok(Some(AddressSlot {
            addresses: Arc::clone(self),
            group,
        }))
    }

    /// The count survives a panic elsewhere while the lock was held: it is only ever
    /// changed by one increment or decrement under the lock.
    fn lock(&self) -> MutexGuard<'_, HashMap<IpAddr, usize>> {
        self.open
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    #[cfg(test)]
    fn open(&self, ip: IpAddr) -> usize {
        self.lock().get(&address_group(ip)).copied().unwrap_or(0)
    }
}

impl Drop for AddressSlot {
    fn drop(&mut self) {
        let mut open = self.addresses.lock();
        if let Some(count) = open.get_mut(&self.group) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.group);
            }
        }
    }
}

/// The group an address is counted under: IPv4 as is, IPv6 by its /64, `::ffff:a.b.c.d`
/// as `a.b.c.d`.
pub(crate) fn address_group(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn groups_are_ipv4_addresses_and_ipv6_64s() {
        assert_eq!(address_group(ip("203.0.113.7")), ip("203.0.113.7"));
        assert_eq!(address_group(ip("::ffff:203.0.113.7")), ip("203.0.113.7"));
        assert_eq!(
            address_group(ip("2001:db8:1:2:ffff:1:2:3")),
            ip("2001:db8:1:2::")
        );
        assert_ne!(
            address_group(ip("2001:db8:1:2::1")),
            address_group(ip("2001:db8:1:3::1"))
        );
    }

    #[test]
    fn slots_are_counted_per_group_and_given_back() {
        let addresses = Addresses::new(2);
        let a = addresses.admit(ip("2001:db8::1")).unwrap();
        let b = addresses.admit(ip("2001:db8::2")).unwrap();
        assert!(addresses.admit(ip("2001:db8::3")).is_err());
        assert!(addresses.admit(ip("2001:db9::1")).is_ok());
        drop(a);
        let c = addresses.admit(ip("2001:db8::3")).unwrap();
        drop((b, c));
        assert_eq!(addresses.open(ip("2001:db8::1")), 0);
        assert!(Addresses::new(usize::MAX)
            .admit(ip("192.0.2.1"))
            .unwrap()
            .is_none());
    }
}
