//! Who is at the other end: the socket file a sender connects to, checked before any
//! byte goes out, and the credentials a connected socket reports.

use super::*;
use std::os::unix::fs::PermissionsExt;

#[test]
fn a_socket_file_of_ours_closed_to_others_is_taken_anything_else_refused() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("s");
    let _l = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    std::fs::set_permissions(&sock, std::fs::Permissions::from_mode(0o600)).unwrap();
    let st = nix::sys::stat::lstat(&sock).unwrap();
    assert_eq!(
        own_socket_file(&sock).unwrap(),
        Some((st.st_dev, st.st_ino))
    );
    for (mode, ok) in [(0o700, true), (0o755, true), (0o620, false), (0o602, false)] {
        std::fs::set_permissions(&sock, std::fs::Permissions::from_mode(mode)).unwrap();
        let r = own_socket_file(&sock);
        assert_eq!(r.is_ok(), ok, "mode {mode:o}");
        if !ok {
            let e = r.unwrap_err();
            assert_eq!(e.cause, Cause::NotOurs);
            assert!(e.call.contains("other users may connect"), "{e}");
        }
    }
    std::fs::set_permissions(&sock, std::fs::Permissions::from_mode(0o600)).unwrap();
    assert_eq!(own_socket_file(&dir.path().join("missing")).unwrap(), None);
    let file = dir.path().join("f");
    std::fs::write(&file, b"").unwrap();
    let e = own_socket_file(&file).unwrap_err();
    assert!(e.call.contains("exists and is not a socket"), "{e}");
    let link = dir.path().join("l");
    std::os::unix::fs::symlink(&sock, &link).unwrap();
    let e = own_socket_file(&link).unwrap_err();
    assert!(e.call.contains("is a symbolic link"), "{e}");
    assert_eq!(e.cause, Cause::NotOurs);
    if me() == 0 {
        std::os::unix::fs::chown(&sock, Some(12345), None).unwrap();
        let e = own_socket_file(&sock).unwrap_err();
        assert!(e.call.contains("belongs to uid 12345"), "{e}");
    }
    // Under a path that is not a directory: the lstat fails, and says so.
    let e = own_socket_file(&file.join("x")).unwrap_err();
    assert_eq!(e.call, "lstat", "{e}");
}

#[test]
fn a_connected_socket_reports_this_process_at_the_other_end() {
    let (a, _b) = crate::pair::pair(crate::endpoint::SocketType::Stream).unwrap();
    assert_eq!(
        peer_cred(&a, "a").unwrap(),
        (me(), std::process::id() as i32)
    );
}

#[test]
fn a_closed_socket_on_this_host_has_no_owner_one_elsewhere_is_remote() {
    // Neither in the table: one of this host's addresses (loopback, or the peer's own)
    // is a closed socket; any other address is another host.
    let loopback: SocketAddr = "127.0.0.1:1".parse().unwrap();
    let far_peer: SocketAddr = "198.51.100.9:5".parse().unwrap();
    assert_eq!(tcp_owner(loopback, far_peer).unwrap(), Owner::Gone);
    let a: SocketAddr = "192.0.2.7:1".parse().unwrap();
    let same_host: SocketAddr = "192.0.2.7:2".parse().unwrap();
    assert_eq!(tcp_owner(a, same_host).unwrap(), Owner::Gone);
    assert_eq!(tcp_owner(a, far_peer).unwrap(), Owner::Remote);
}
