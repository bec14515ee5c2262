//! The peer's liveness as its robust "alive" mutex tells it, in process: a thread with
//! its own mapping of the same file stands in for the peer, holding the mutex while it
//! lives and ending with it held.

use super::ring::{peer_alive, peer_died};
use ipc_sys::shm::{Lock, Mapping};
use std::sync::mpsc;
use std::thread;

const LEN: usize = 8192;

#[test]
fn a_held_alive_mutex_is_a_live_peer_a_free_or_abandoned_one_a_dead_one() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("segment");
    let file = std::fs::File::options()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&path)
        .unwrap();
    file.set_len(LEN as u64).unwrap();
    let map = Mapping::map_shared(&file, LEN).unwrap();
    let m = &map.header().producer_alive;
    m.init().unwrap();
    // Nobody took it: no peer; and the probe gave it back, so again no peer.
    assert!(!peer_alive(m));
    assert!(!peer_alive(m));
    let (held_tx, held_rx) = mpsc::channel();
    let (stop_tx, stop_rx) = mpsc::channel::<()>();
    let peer_file = file.try_clone().unwrap();
    let peer = thread::spawn(move || {
        let map = Mapping::map_shared(&peer_file, LEN).unwrap();
        map.header().producer_alive.lock().unwrap();
        held_tx.send(()).unwrap();
        stop_rx.recv().unwrap();
        // Ends holding it; the mapping stays, so the kernel can mark the owner dead.
        std::mem::forget(map);
    });
    held_rx.recv().unwrap();
    assert!(peer_alive(m), "a held mutex is a live peer");
    assert!(peer_alive(m), "asking again changes nothing");
    stop_tx.send(()).unwrap();
    peer.join().unwrap();
    // Ended holding it (EOWNERDEAD): dead, and the mutex made consistent and free again.
    assert!(!peer_alive(m));
    assert!(!peer_alive(m));
    assert!(m.try_lock().is_ok_and(|l| l == Lock::Acquired));
    m.unlock();
    let e = peer_died("segment /x", "producer");
    assert!(e.call.contains("the producer is gone"), "{e}");
    assert_eq!(e.kind, crate::error::Kind::Peer);
}
