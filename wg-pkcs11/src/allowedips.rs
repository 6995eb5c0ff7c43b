//! AllowedIPs: a longest-prefix-match table from IP networks to peers, for IPv4 and IPv6.
//!
//! Outgoing packets are routed to the peer owning the longest prefix containing their
//! destination; decrypted packets are dropped unless that peer owns their source.
//! A path-compressed binary trie (as the kernel's allowedips.c): a node per stored prefix plus
//! one per branching point, so a peer with a few /32 or /128 entries costs a few small nodes.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Addresses are kept left-aligned in a u128 (IPv4 in the top 32 bits).
type Key = u128;

struct Node<T> {
    key: Key,
    bits: u8,
    value: Option<T>,
    children: [Option<Box<Node<T>>>; 2],
}

fn mask(key: Key, bits: u8) -> Key {
    if bits == 0 {
        0
    } else {
        key & (!0u128 << (128 - u32::from(bits)))
    }
}

fn bit_at(key: Key, index: u8) -> usize {
    ((key >> (127 - u32::from(index))) & 1) as usize
}

fn common_bits(a: Key, b: Key) -> u8 {
    (a ^ b).leading_zeros().min(128) as u8
}

fn to_key(ip: IpAddr) -> (Key, u8, bool) {
    match ip {
        IpAddr::V4(a) => ((u128::from(u32::from(a))) << 96, 32, false),
        IpAddr::V6(a) => (u128::from(a), 128, true),
    }
}

fn from_key(key: Key, v6: bool) -> IpAddr {
    if v6 {
        IpAddr::V6(Ipv6Addr::from(key))
    } else {
        IpAddr::V4(Ipv4Addr::from((key >> 96) as u32))
    }
}

impl<T> Node<T> {
    fn leaf(key: Key, bits: u8, value: T) -> Box<Node<T>> {
        Box::new(Node {
            key,
            bits,
            value: Some(value),
            children: [None, None],
        })
    }
}

fn insert<T>(slot: &mut Option<Box<Node<T>>>, key: Key, bits: u8, value: T) -> Option<T> {
    let Some(node) = slot else {
        *slot = Some(Node::leaf(key, bits, value));
        return None;
    };
    let common = common_bits(node.key, key).min(node.bits).min(bits);
    if common == node.bits {
        if bits == node.bits {
            return node.value.replace(value);
        }
        let side = bit_at(key, node.bits);
        return insert(&mut node.children[side], key, bits, value);
    }
    // The new prefix diverges from (or contains) this node: put a node at the common prefix.
    let old = slot.take().expect("checked above");
    let old_side = bit_at(old.key, common);
    let mut parent = if common == bits {
        Node::leaf(key, bits, value)
    } else {
        let mut branch = Box::new(Node {
            key: mask(key, common),
            bits: common,
            value: None,
            children: [None, None],
        });
        branch.children[bit_at(key, common)] = Some(Node::leaf(key, bits, value));
        branch
    };
    parent.children[old_side] = Some(old);
    *slot = Some(parent);
    None
}

/// Drop a node that holds no value and has fewer than two children (keeps the trie compressed).
fn compact<T>(slot: &mut Option<Box<Node<T>>>) {
    if let Some(node) = slot {
        if node.value.is_none() {
            match (node.children[0].is_some(), node.children[1].is_some()) {
                (true, true) => {}
                (false, false) => *slot = None,
                _ => {
                    let child = node.children[0].take().or_else(|| node.children[1].take());
                    *slot = child;
                }
            }
        }
    }
}

fn remove<T>(slot: &mut Option<Box<Node<T>>>, key: Key, bits: u8) -> Option<T> {
    let node = slot.as_mut()?;
    if node.bits > bits || mask(key, node.bits) != node.key {
        return None;
    }
    let removed = if node.bits == bits {
        node.value.take()
    } else {
        let side = bit_at(key, node.bits);
        remove(&mut node.children[side], key, bits)
    };
    compact(slot);
    removed
}

fn remove_where<T>(slot: &mut Option<Box<Node<T>>>, pred: &mut dyn FnMut(&T) -> bool) -> usize {
    let Some(node) = slot else { return 0 };
    let mut removed = 0;
    if node.value.as_ref().is_some_and(&mut *pred) {
        node.value = None;
        removed += 1;
    }
    for child in node.children.iter_mut() {
        removed += remove_where(child, pred);
    }
    compact(slot);
    removed
}

fn walk<'a, T>(slot: &'a Option<Box<Node<T>>>, out: &mut dyn FnMut(Key, u8, &'a T)) {
    if let Some(node) = slot {
        if let Some(v) = &node.value {
            out(node.key, node.bits, v);
        }
        for child in &node.children {
            walk(child, out);
        }
    }
}

/// The AllowedIPs table of an interface: prefixes to values (typically `Arc<Peer>`).
pub struct AllowedIps<T> {
    v4: Option<Box<Node<T>>>,
    v6: Option<Box<Node<T>>>,
}

impl<T> Default for AllowedIps<T> {
    fn default() -> Self {
        AllowedIps { v4: None, v6: None }
    }
}

impl<T> AllowedIps<T> {
    pub fn new() -> AllowedIps<T> {
        AllowedIps::default()
    }

    fn root(&mut self, v6: bool) -> &mut Option<Box<Node<T>>> {
        if v6 {
            &mut self.v6
        } else {
            &mut self.v4
        }
    }

    /// Map `ip/cidr` (host bits ignored, cidr capped at the address length) to `value`,
    /// returning the value it replaces.
    pub fn insert(&mut self, ip: IpAddr, cidr: u8, value: T) -> Option<T> {
        let (key, max, v6) = to_key(ip);
        let bits = cidr.min(max);
        insert(self.root(v6), mask(key, bits), bits, value)
    }

    /// Remove exactly `ip/cidr`, returning its value.
    pub fn remove(&mut self, ip: IpAddr, cidr: u8) -> Option<T> {
        let (key, max, v6) = to_key(ip);
        let bits = cidr.min(max);
        remove(self.root(v6), mask(key, bits), bits)
    }

    /// The value of the longest prefix containing `ip`.
    pub fn lookup(&self, ip: IpAddr) -> Option<&T> {
        let (key, _, v6) = to_key(ip);
        let mut node = if v6 {
            self.v6.as_deref()
        } else {
            self.v4.as_deref()
        };
        let mut best = None;
        while let Some(n) = node {
            if mask(key, n.bits) != n.key {
                break;
            }
            if n.value.is_some() {
                best = n.value.as_ref();
            }
            if n.bits == 128 {
                break;
            }
            node = n.children[bit_at(key, n.bits)].as_deref();
        }
        best
    }

    /// Remove every entry whose value matches `pred` (e.g. all of a removed peer's), returning
    /// how many were removed.
    pub fn remove_where(&mut self, mut pred: impl FnMut(&T) -> bool) -> usize {
        remove_where(&mut self.v4, &mut pred) + remove_where(&mut self.v6, &mut pred)
    }

    /// Every entry whose value matches `pred`, IPv4 first, as (network, cidr).
    pub fn entries_where(&self, mut pred: impl FnMut(&T) -> bool) -> Vec<(IpAddr, u8)> {
        let mut out = Vec::new();
        walk(&self.v4, &mut |k, b, v| {
            if pred(v) {
                out.push((from_key(k, false), b));
            }
        });
        walk(&self.v6, &mut |k, b, v| {
            if pred(v) {
                out.push((from_key(k, true), b));
            }
        });
        out
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        let mut n = 0;
        walk(&self.v4, &mut |_, _, _| n += 1);
        walk(&self.v6, &mut |_, _, _| n += 1);
        n
    }

    pub fn is_empty(&self) -> bool {
        self.v4.is_none() && self.v6.is_none()
    }

    /// Remove every entry.
    pub fn clear(&mut self) {
        self.v4 = None;
        self.v6 = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn longest_prefix_wins_ipv4() {
        let mut t = AllowedIps::new();
        t.insert(ip("0.0.0.0"), 0, 'd');
        t.insert(ip("10.0.0.0"), 8, 'a');
        t.insert(ip("10.1.0.0"), 16, 'b');
        t.insert(ip("10.1.2.3"), 32, 'c');
        t.insert(ip("10.1.2.128"), 25, 'e');
        assert_eq!(t.lookup(ip("10.1.2.3")), Some(&'c'));
        assert_eq!(t.lookup(ip("10.1.2.4")), Some(&'b'));
        assert_eq!(t.lookup(ip("10.1.2.200")), Some(&'e'));
        assert_eq!(t.lookup(ip("10.2.0.1")), Some(&'a'));
        assert_eq!(t.lookup(ip("192.168.1.1")), Some(&'d'));
        assert_eq!(t.lookup(ip("::1")), None, "families are separate");
        assert_eq!(t.len(), 5);
    }

    #[test]
    fn longest_prefix_wins_ipv6() {
        let mut t = AllowedIps::new();
        t.insert(ip("2001:db8::"), 32, 1);
        t.insert(ip("2001:db8:1::"), 48, 2);
        t.insert(ip("2001:db8:1::7"), 128, 3);
        t.insert(ip("::"), 0, 4);
        assert_eq!(t.lookup(ip("2001:db8:1::7")), Some(&3));
        assert_eq!(t.lookup(ip("2001:db8:1::8")), Some(&2));
        assert_eq!(t.lookup(ip("2001:db8:2::8")), Some(&1));
        assert_eq!(t.lookup(ip("fe80::1")), Some(&4));
        assert_eq!(t.lookup(ip("10.0.0.1")), None);
    }

    #[test]
    fn host_bits_are_masked_and_insert_replaces() {
        let mut t = AllowedIps::new();
        assert_eq!(t.insert(ip("10.1.2.3"), 24, 'a'), None);
        assert_eq!(t.insert(ip("10.1.2.0"), 24, 'b'), Some('a'));
        assert_eq!(t.entries_where(|_| true), vec![(ip("10.1.2.0"), 24)]);
        assert_eq!(t.insert(ip("10.1.2.3"), 40, 'c'), None, "cidr capped at 32");
        assert_eq!(t.lookup(ip("10.1.2.3")), Some(&'c'));
    }

    #[test]
    fn remove_and_remove_by_peer_keep_other_entries() {
        let mut t = AllowedIps::new();
        t.insert(ip("10.0.0.0"), 8, 'a');
        t.insert(ip("10.1.0.0"), 16, 'b');
        t.insert(ip("10.1.0.1"), 32, 'a');
        t.insert(ip("fd00::"), 8, 'a');
        t.insert(ip("fd00::1"), 128, 'b');
        assert_eq!(t.remove(ip("10.1.0.0"), 16), Some('b'));
        assert_eq!(t.remove(ip("10.1.0.0"), 16), None);
        assert_eq!(t.lookup(ip("10.1.5.5")), Some(&'a'));
        let mut a = t.entries_where(|v| *v == 'a');
        a.sort();
        assert_eq!(
            a,
            vec![(ip("10.0.0.0"), 8), (ip("10.1.0.1"), 32), (ip("fd00::"), 8)]
        );
        assert_eq!(t.remove_where(|v| *v == 'a'), 3);
        assert_eq!(t.lookup(ip("10.1.0.1")), None);
        assert_eq!(t.lookup(ip("fd00::1")), Some(&'b'));
        assert_eq!(t.lookup(ip("fd00::2")), None);
        assert_eq!(t.len(), 1);
        t.clear();
        assert!(t.is_empty());
    }

    #[test]
    fn matches_a_linear_scan_on_many_prefixes() {
        let mut x: u64 = 0x1234_5678_9abc_def1;
        let mut rnd = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let mut t = AllowedIps::new();
        let mut list: Vec<(u32, u8, usize)> = Vec::new();
        for i in 0..400 {
            // Cluster the addresses so that prefixes overlap a lot.
            let addr = (rnd() as u32) & 0xff0f_f0ff;
            let cidr = (rnd() % 33) as u8;
            let m = if cidr == 0 {
                0
            } else {
                addr & (!0u32 << (32 - cidr))
            };
            t.insert(IpAddr::V4(Ipv4Addr::from(addr)), cidr, i);
            list.retain(|&(a, c, _)| !(a == m && c == cidr));
            list.push((m, cidr, i));
            if i % 7 == 0 {
                let (a, c, _) = list.remove((rnd() % list.len() as u64) as usize);
                assert!(t.remove(IpAddr::V4(Ipv4Addr::from(a)), c).is_some());
            }
        }
        for _ in 0..5000 {
            let probe = (rnd() as u32) & 0xff0f_f0ff | (rnd() as u32 & 0x0010_0100);
            let expected = list
                .iter()
                .filter(|&&(a, c, _)| c == 0 || (probe & (!0u32 << (32 - c))) == a)
                .max_by_key(|&&(_, c, _)| c)
                .map(|&(_, _, v)| v);
            assert_eq!(
                t.lookup(IpAddr::V4(Ipv4Addr::from(probe))).copied(),
                expected,
                "{probe:x}"
            );
        }
        assert_eq!(t.len(), list.len());
    }
}
