//! `--statsd.sender-label`: a label naming the IP address each event came from, so gauges
//! that many senders report under one name stay apart.
//!
//! The listener tells the worker who sent what follows ([`Sink::sender`](crate::ingest::Sink::sender)):
//! the source of each UDP datagram, the peer of a TCP connection, no one for unixgram. The
//! worker keys its table of known lines on (sender, line bytes), so a line from one sender
//! never reaches another sender's series, and at a first sight adds the label after mapping.
//! The label is part of the series' identity in the store, so every (series, sender) pair
//! counts against the series limits like any other series.
//!
//! The label always comes from the gateway: a tag or mapping label of the same name is
//! replaced by the address (or removed for a unixgram sender, which has none), and every
//! event where that happened is counted in `statsgate_sender_label_overrides_total`. Letting
//! a sender's own tag win would let any sender pose as another.

use std::net::IpAddr;

use crate::mapping::naming::{is_reserved_label, is_valid_label_name};

/// The name of the sender label (`--statsd.sender-label`), checked to be a label name that
/// Prometheus accepts and that no exposition owns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SenderLabel {
    name: String,
}

/// Why a name cannot be the sender label.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SenderLabelError {
    /// Not `[a-zA-Z_][a-zA-Z0-9_]*`.
    #[error(
        "{0:?} is not a Prometheus label name (letters, digits and _, not starting with a digit)"
    )]
    Invalid(String),
    /// `__`-prefixed (reserved by Prometheus), or `le` or `quantile` (the buckets of a
    /// histogram and the quantiles of a summary).
    #[error(
        "{0:?} is a reserved label name (names starting with __ are Prometheus's own; le and \
         quantile belong to histograms and summaries)"
    )]
    Reserved(String),
}

impl SenderLabel {
    /// The label `name`, if Prometheus accepts it and no exposition owns it.
    pub fn new(name: &str) -> Result<SenderLabel, SenderLabelError> {
        if !is_valid_label_name(name) {
            return Err(SenderLabelError::Invalid(name.to_string()));
        }
        if is_reserved_label(name, true, true) {
            return Err(SenderLabelError::Reserved(name.to_string()));
        }
        Ok(SenderLabel {
            name: name.to_string(),
        })
    }

    /// The label name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Sets the label to `sender`'s address in `labels` (the labels of a first sight, after
    /// mapping), or removes it when there is no address. True when `labels` already held
    /// the name, from a tag or the mapping: that value was overridden.
    pub(super) fn apply(&self, sender: Option<IpAddr>, labels: &mut Vec<(String, String)>) -> bool {
        let found = labels.iter().position(|(k, _)| *k == self.name);
        match (found, sender) {
            (Some(i), Some(ip)) => labels[i].1 = label_value(ip),
            (None, Some(ip)) => labels.push((self.name.clone(), label_value(ip))),
            (Some(i), None) => {
                labels.remove(i);
            }
            (None, None) => {}
        }
        found.is_some()
    }
}

/// The label value of an address: IPv4 as a dotted quad (an IPv4-mapped IPv6 address
/// included, as a dual-stack socket reports IPv4 senders), IPv6 in its canonical text form
/// (RFC 5952). No port: a client's source port changes with each socket it opens, and would
/// make a new series each time.
pub(super) fn label_value(ip: IpAddr) -> String {
    ip.to_canonical().to_string()
}

/// A worker's current sender, as it goes into the worker's keys.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct Sender {
    /// The address, canonical (see [`label_value`]); `None` for unixgram.
    address: Option<IpAddr>,
    /// `address` as 16 bytes, IPv4 as IPv4-mapped IPv6: one length for every address, so
    /// the key part is never confused with the parts after it; empty when there is none.
    key: [u8; 16],
    key_len: u8,
}

impl Sender {
    /// The sender `from`.
    #[inline]
    pub(super) fn of(from: Option<IpAddr>) -> Sender {
        let address = from.map(|ip| ip.to_canonical());
        let (key, key_len) = match address {
            Some(IpAddr::V4(v4)) => (v4.to_ipv6_mapped().octets(), 16),
            Some(IpAddr::V6(v6)) => (v6.octets(), 16),
            None => ([0; 16], 0),
        };
        Sender {
            address,
            key,
            key_len,
        }
    }

    /// The address, canonical.
    pub(super) fn address(&self) -> Option<IpAddr> {
        self.address
    }

    /// The first part of every key of this sender's lines.
    #[inline]
    pub(super) fn key(&self) -> &[u8] {
        &self.key[..usize::from(self.key_len)]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    #[test]
    fn names_are_checked_like_prometheus_label_names() {
        assert_eq!(SenderLabel::new("instance").unwrap().name(), "instance");
        assert!(SenderLabel::new("_sender9").is_ok());
        for bad in ["", "9lives", "sender-ip", "sender.ip", "ä"] {
            assert_eq!(
                SenderLabel::new(bad),
                Err(SenderLabelError::Invalid(bad.to_string())),
                "{bad}"
            );
        }
        for reserved in ["__name__", "__address__", "le", "quantile"] {
            assert_eq!(
                SenderLabel::new(reserved),
                Err(SenderLabelError::Reserved(reserved.to_string())),
                "{reserved}"
            );
        }
        let err = SenderLabel::new("sender-ip").unwrap_err().to_string();
        assert!(
            err.contains("\"sender-ip\" is not a Prometheus label name"),
            "{err}"
        );
    }

    #[test]
    fn values_are_the_address_without_port_ipv4_mapped_shown_as_ipv4() {
        let v4: IpAddr = Ipv4Addr::new(10, 1, 2, 3).into();
        assert_eq!(label_value(v4), "10.1.2.3");
        let mapped: IpAddr = Ipv4Addr::new(10, 1, 2, 3).to_ipv6_mapped().into();
        assert_eq!(label_value(mapped), "10.1.2.3");
        let v6: IpAddr = "2001:0db8:0000:0000:0000:0000:0000:0001".parse().unwrap();
        assert_eq!(label_value(v6), "2001:db8::1");
        assert_eq!(label_value(Ipv6Addr::LOCALHOST.into()), "::1");
    }

    #[test]
    fn keys_do_not_tell_ipv4_from_ipv4_mapped_but_tell_every_address_apart() {
        let v4 = Sender::of(Some(Ipv4Addr::new(127, 0, 0, 2).into()));
        let mapped = Sender::of(Some(Ipv4Addr::new(127, 0, 0, 2).to_ipv6_mapped().into()));
        assert_eq!(v4, mapped);
        assert_eq!(v4.address(), Some(Ipv4Addr::new(127, 0, 0, 2).into()));
        assert_eq!(v4.key().len(), 16);
        let other = Sender::of(Some(Ipv4Addr::new(127, 0, 0, 3).into()));
        assert_ne!(v4.key(), other.key());
        let v6 = Sender::of(Some(Ipv6Addr::LOCALHOST.into()));
        assert_eq!(v6.key().len(), 16);
        assert_ne!(v6.key(), v4.key());
        assert_eq!(Sender::of(None).key(), b"");
        assert_eq!(Sender::of(None).address(), None);
    }

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn the_sender_address_wins_over_a_tag_and_no_address_removes_it() {
        let label = SenderLabel::new("instance").unwrap();
        let ip: IpAddr = Ipv4Addr::new(10, 0, 0, 7).into();

        let mut labels = pairs(&[("a", "1")]);
        assert!(!label.apply(Some(ip), &mut labels), "nothing overridden");
        assert_eq!(labels, pairs(&[("a", "1"), ("instance", "10.0.0.7")]));

        let mut labels = pairs(&[("instance", "spoofed"), ("a", "1")]);
        assert!(label.apply(Some(ip), &mut labels), "the tag is overridden");
        assert_eq!(labels, pairs(&[("instance", "10.0.0.7"), ("a", "1")]));

        let mut labels = pairs(&[("a", "1"), ("instance", "spoofed")]);
        assert!(
            label.apply(None, &mut labels),
            "removed: counted as overridden"
        );
        assert_eq!(labels, pairs(&[("a", "1")]));

        let mut labels = pairs(&[("a", "1")]);
        assert!(!label.apply(None, &mut labels));
        assert_eq!(labels, pairs(&[("a", "1")]));
    }
}
