//! Admission without sockets: caps, holds, fair shares, rates.

use super::*;

fn limits() -> AdmissionLimits {
    AdmissionLimits {
        max_connections: 10,
        max_pending_handshakes: 6,
        max_connections_per_address: 4,
        max_pending_per_address: 3,
        max_new_connections_per_address_per_second: 0,
    }
}

fn peer(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// Polls `slot` once: whether the held connection got its handshake slot.
fn got_slot(held: &mut Admitted) -> bool {
    let mut slot = std::pin::pin!(held.slot());
    slot.as_mut()
        .poll(&mut Context::from_waker(Waker::noop()))
        .is_ready()
}

#[test]
fn one_address_is_held_to_its_caps_and_others_get_in() {
    let a = Admission::new(limits());
    let mut flood: Vec<Admitted> = (0..3)
        .map(|i| a.admit(peer(&format!("10.0.0.1:{}", 1000 + i))).unwrap())
        .collect();
    // Past the pending cap: held, not closed; it gets the first slot that frees.
    let mut held = a.admit(peer("10.0.0.1:2000")).unwrap();
    assert!(held.is_held() && !got_slot(&mut held));
    assert_eq!((a.open(), a.pending()), (4, 3));
    flood[0].handshake_done();
    assert!(got_slot(&mut held) && !held.is_held());
    assert_eq!((a.open(), a.pending()), (4, 3));
    flood.push(held);
    // Past the connection cap (held ones count): closed at accept.
    assert_eq!(
        a.admit(peer("10.0.0.1:2002")).unwrap_err(),
        Refusal::AddressConnections
    );
    let other = a.admit(peer("10.0.0.2:1")).unwrap();
    assert!(!other.is_held());
    assert_eq!((a.open(), a.pending(), a.addresses()), (5, 4, 2));
    drop(flood);
    drop(other);
    assert_eq!((a.open(), a.pending(), a.addresses()), (0, 0, 0));
    let counts = a.refused();
    assert_eq!(counts[0].1 + counts[1].1, 1);
}

#[test]
fn held_connections_get_slots_in_the_order_they_came() {
    let a = Admission::new(limits());
    let mut first: Vec<Admitted> = (0..3)
        .map(|i| a.admit(peer(&format!("10.0.0.1:{i}"))).unwrap())
        .collect();
    let mut h1 = a.admit(peer("10.0.0.1:10")).unwrap();
    assert!(!got_slot(&mut h1), "registered first");
    // A held connection that gives up (its socket closed) frees nothing it had not.
    first.pop();
    assert!(got_slot(&mut h1), "the freed slot goes to the one waiting");
    assert_eq!(a.pending(), 3);
    drop(h1);
    assert_eq!((a.open(), a.pending()), (2, 2));
}

#[test]
fn a_spent_pending_budget_holds_and_the_total_pauses_accepting() {
    let a = Admission::new(limits());
    let mut held = Vec::new();
    for i in 0..6 {
        held.push(a.admit(peer(&format!("10.0.1.{i}:1"))).unwrap());
    }
    // Six handshakes under way, one per source: a seventh source is held (it holds
    // one fewer than nobody, so it evicts nobody).
    let mut seventh = a.admit(peer("10.0.2.1:1")).unwrap();
    assert!(seventh.is_held() && !got_slot(&mut seventh));
    assert!(held.iter().all(|h| !h.ticket.is_evicted()));
    held[0].handshake_done();
    assert!(
        got_slot(&mut seventh),
        "the freed slot goes to the held one"
    );
    held.push(seventh);
    for h in &mut held {
        h.handshake_done();
    }
    for i in 0..3 {
        let mut c = a.admit(peer(&format!("10.0.3.{i}:1"))).unwrap();
        c.handshake_done();
        held.push(c);
    }
    assert!(!a.has_room(), "ten open: full, accepting pauses");
    assert_eq!(a.admit(peer("10.0.4.1:1")).unwrap_err(), Refusal::Full);
    held.pop();
    assert!(a.has_room());
}

/// Two sources hold every slot (3 + 3 of 6); a third gets one by evicting the oldest
/// handshake of the greediest, and the slot that frees goes to it, not to the
/// greedy source's own held connections.
#[test]
fn a_source_holding_fewer_evicts_the_greediest() {
    let a = Admission::new(AdmissionLimits {
        max_connections_per_address: 10,
        ..limits()
    });
    let mut first: Vec<Admitted> = (0..3)
        .map(|i| a.admit(peer(&format!("10.0.0.1:{i}"))).unwrap())
        .collect();
    let mut second: Vec<Admitted> = (0..3)
        .map(|i| a.admit(peer(&format!("10.0.0.2:{i}"))).unwrap())
        .collect();
    let mut first_held = a.admit(peer("10.0.0.1:9")).unwrap();
    assert!(first_held.is_held());
    let evicted = |v: &[Admitted]| v.iter().filter(|c| c.ticket.is_evicted()).count();
    assert_eq!(
        evicted(&first) + evicted(&second),
        0,
        "a source at its own cap evicts nobody"
    );
    let mut newcomer = a.admit(peer("10.0.0.3:1")).unwrap();
    assert!(newcomer.is_held() && !got_slot(&mut newcomer));
    // The two hold as many: either's oldest is told to go, and only it.
    let victims = if first[0].ticket.is_evicted() {
        &mut first
    } else {
        &mut second
    };
    assert!(victims[0].ticket.is_evicted());
    let mut told = std::pin::pin!(victims[0].evicted());
    assert!(told
        .as_mut()
        .poll(&mut Context::from_waker(Waker::noop()))
        .is_ready());
    assert_eq!(evicted(&first) + evicted(&second), 1);
    // A second newcomer evicts the oldest of the other (now the greediest), not the
    // same one again.
    let another = a.admit(peer("10.0.0.4:1")).unwrap();
    assert!(another.is_held());
    assert_eq!(evicted(&first) + evicted(&second), 2);
    assert!(first[0].ticket.is_evicted() && second[0].ticket.is_evicted());
    drop(first.remove(0));
    drop(second.remove(0));
    assert!(
        got_slot(&mut newcomer),
        "the slot goes to a source holding none"
    );
    assert!(
        !got_slot(&mut first_held),
        "not to the greedy source's held one"
    );
    assert_eq!(a.pending(), 6);
    drop((first, second, first_held, newcomer, another));
    assert_eq!((a.open(), a.pending(), a.addresses()), (0, 0, 0));
}

/// New connections per source per second: past the rate, closed at accept and
/// counted; other sources are not affected.
#[test]
fn the_connection_rate_is_per_source() {
    let a = Admission::new(AdmissionLimits {
        max_new_connections_per_address_per_second: 2,
        max_connections_per_address: 10,
        ..limits()
    });
    let kept: Vec<_> = (0..2)
        .map(|i| a.admit(peer(&format!("10.0.0.1:{i}"))).unwrap())
        .collect();
    assert_eq!(
        a.admit(peer("10.0.0.1:9")).unwrap_err(),
        Refusal::AddressRate
    );
    assert!(a.admit(peer("10.0.0.2:1")).is_ok());
    let rate = a.refused()[Refusal::AddressRate as usize];
    assert_eq!(rate, (Refusal::AddressRate, 1));
    drop(kept);
}

#[test]
fn ipv6_counts_by_64_bit_prefix_and_mapped_ipv4_as_ipv4() {
    let k = |s: &str| AddressKey::of(s.parse().unwrap());
    assert_eq!(k("2001:db8:1:2::1"), k("2001:db8:1:2:ffff::9"));
    assert_ne!(k("2001:db8:1:2::1"), k("2001:db8:1:3::1"));
    assert_eq!(k("::ffff:192.0.2.7"), k("192.0.2.7"));
    let a = Admission::new(limits());
    let _held: Vec<_> = (0..3)
        .map(|i| a.admit(peer(&format!("[2001:db8::{i}]:1"))).unwrap())
        .collect();
    assert!(
        a.admit(peer("[2001:db8::99]:1")).unwrap().is_held(),
        "another address of the same /64 is the same source"
    );
    assert!(a.admit(peer("[2001:db8:0:1::1]:1")).is_ok());
}
