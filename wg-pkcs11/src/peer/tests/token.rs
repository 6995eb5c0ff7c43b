//! A token that fails or hangs: the sessions it made go on, a removal never waits for it, and
//! a failing static DH costs one token operation per REKEY_TIMEOUT.

use super::*;

/// A key whose token can be switched off, like an unplugged or failing secure element.
struct FlakyKey {
    inner: SoftKey,
    failing: std::sync::atomic::AtomicBool,
}

impl StaticKey for FlakyKey {
    fn public_key(&self) -> [u8; 32] {
        self.inner.public_key()
    }
    fn diffie_hellman(&self, p: &[u8; 32]) -> Result<Zeroizing<[u8; 32]>, KeyError> {
        if self.failing.load(Ordering::SeqCst) {
            return Err(KeyError::Token("CKR_DEVICE_ERROR".into()));
        }
        self.inner.diffie_hellman(p)
    }
}

#[test]
fn a_failing_token_keeps_the_current_session_and_later_handshakes_succeed() {
    let t0 = Instant::now();
    let flaky = Arc::new(FlakyKey {
        inner: SoftKey::generate(),
        failing: AtomicBool::new(true),
    });
    let a_id = Identity::new(flaky.clone());
    let a_table = IndexTable::new();
    let b = {
        let mut b = Side::new("192.0.2.2:1");
        b.peer = Some(Peer::new(a_id.public_key(), None, None, 0, t0));
        b
    };
    let a_peer = Peer::new(b.id.public_key(), None, Some(b.addr), 0, t0);
    // The per-peer ss fails: no initiation, and nothing cached.
    assert!(matches!(
        a_peer.create_initiation(&a_id, &a_table, false, t0),
        Err(HandshakeError::Key(KeyError::Token(_)))
    ));
    flaky.failing.store(false, Ordering::SeqCst);
    let a = Side {
        key: Arc::new(CountingKey {
            inner: SoftKey::generate(),
            count: AtomicUsize::new(0),
        }),
        id: a_id,
        table: a_table,
        peer: Some(a_peer),
        addr: "192.0.2.1:1".parse().unwrap(),
    };
    // The failed attempt counted: the next one comes REKEY_TIMEOUT later (as the kernel's
    // last_sent_handshake, set before the initiation is made).
    assert!(matches!(
        a.peer().create_initiation(&a.id, &a.table, false, t0),
        Err(HandshakeError::RateLimited)
    ));
    let t0 = t0 + REKEY_TIMEOUT;
    handshake(&a, &b, t0).unwrap();
    transfer(&a, &b, b"up", t0).unwrap();
    // The token fails during the rekey (se when the response arrives): the old session goes on.
    let t1 = t0 + Duration::from_secs(121);
    let init = a
        .peer()
        .create_initiation(&a.id, &a.table, false, t1)
        .unwrap();
    let rx = consume_initiation(&b.id, &init).unwrap();
    let resp = b
        .peer()
        .accept_initiation(&b.id, &b.table, rx, a.addr, t1)
        .unwrap();
    flaky.failing.store(true, Ordering::SeqCst);
    assert!(matches!(
        a.peer()
            .consume_response(&a.id, &a.table, &resp, b.addr, t1),
        Err(HandshakeError::Key(_))
    ));
    assert_eq!(transfer(&a, &b, b"still up", t1).unwrap(), b"still up");
    assert_eq!(transfer(&b, &a, b"both ways", t1).unwrap(), b"both ways");
    // The retransmit timer asks again; with the token back the handshake completes.
    flaky.failing.store(false, Ordering::SeqCst);
    let t2 = a.peer().next_deadline().unwrap().max(t1 + REKEY_TIMEOUT);
    let actions = a.peer().tick(&a.table, t2);
    assert!(actions.send_initiation && actions.initiation_is_retry);
    handshake(&a, &b, t2).unwrap();
    assert_eq!(
        transfer(&a, &b, b"new session", t2).unwrap(),
        b"new session"
    );
}

/// Issue 15, point 3: removing a peer while the worker is in the token for its response must
/// neither wait for the token nor leave a session (and its index) behind afterwards.
#[test]
fn clearing_a_peer_during_its_token_operation_neither_waits_nor_leaves_keys() {
    let t0 = Instant::now();
    let (entered_tx, entered_rx) = std::sync::mpsc::sync_channel(1);
    let (release_tx, release_rx) = std::sync::mpsc::channel();
    let key = Arc::new(GatedKey {
        inner: SoftKey::generate(),
        entered: entered_tx,
        release: Mutex::new(release_rx),
        gated: AtomicBool::new(false),
    });
    let a_id = Identity::new(key.clone());
    let a_table = Arc::new(IndexTable::new());
    let mut b = Side::new("192.0.2.2:1");
    b.peer = Some(Peer::new(a_id.public_key(), None, None, 0, t0));
    let a_peer = Peer::new(b.id.public_key(), None, Some(b.addr), 0, t0);
    let init = a_peer
        .create_initiation(&a_id, &a_table, false, t0)
        .unwrap();
    let rx = consume_initiation(&b.id, &init).unwrap();
    let resp = b
        .peer()
        .accept_initiation(&b.id, &b.table, rx, "192.0.2.1:1".parse().unwrap(), t0)
        .unwrap();
    key.gated.store(true, Ordering::SeqCst);
    let b_addr = b.addr;
    let worker = {
        let (peer, table) = (a_peer.clone(), a_table.clone());
        std::thread::spawn(move || peer.consume_response(&a_id, &table, &resp, b_addr, t0))
    };
    // Bounded: a worker that fails before the token must fail this test, not hang it.
    entered_rx
        .recv_timeout(Duration::from_secs(10))
        .expect("the worker never reached the token");
    // The token is busy inside consume_response: clear() must not wait for it.
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    let clearer = {
        let (peer, table) = (a_peer.clone(), a_table.clone());
        std::thread::spawn(move || {
            peer.clear(&table);
            done_tx.send(()).unwrap();
        })
    };
    let cleared = done_rx.recv_timeout(Duration::from_secs(5)).is_ok();
    release_tx.send(()).unwrap();
    clearer.join().unwrap();
    assert!(cleared, "clear() waited for the token operation");
    assert_eq!(worker.join().unwrap(), Err(HandshakeError::PeerRemoved));
    assert!(
        a_peer.current_keypair(t0).is_none(),
        "no session on a removed peer"
    );
    assert_eq!(a_table.len(), 0, "no index left behind");
    assert!(a_peer.is_closed());
}

/// Issue 20: the REKEY_TIMEOUT spacing is checked, and the attempt counted, before the static
/// DH: a peer whose static-static DH fails (a small-order key, a failing token) costs one token
/// operation per REKEY_TIMEOUT, not one per packet that asks for a handshake.
#[test]
fn a_failing_static_dh_costs_one_token_operation_per_rekey_timeout() {
    let t0 = Instant::now();
    let mut a = Side::new("192.0.2.1:51820");
    a.peer = Some(Peer::new([0; 32], None, Some(a.addr), 0, t0));
    for i in 0..20u64 {
        let now = t0 + Duration::from_millis(100 * i);
        assert!(a
            .peer()
            .create_initiation(&a.id, &a.table, false, now)
            .is_err());
    }
    assert_eq!(a.dh_count(), 1, "one attempt in these 2 s");
    assert!(a
        .peer()
        .create_initiation(&a.id, &a.table, false, t0 + REKEY_TIMEOUT)
        .is_err());
    assert_eq!(a.dh_count(), 2);
}
