//! `TCP_NODELAY` on the hub's PostgreSQL connections.
//!
//! sqlx 0.9.0 stopped setting `TCP_NODELAY` on the sockets it opens (sqlx issue #4335; the fix,
//! pull request #4336, is merged upstream but not released as of 0.9.0, the version sea-orm 2.0
//! pins). Without it Nagle's algorithm holds back the tail of every statement larger than one
//! segment until PostgreSQL's delayed acknowledgement arrives, about 40 ms later: on
//! `127.0.0.1` a full score recompute of 20,000 customers took 15.8 s instead of 4.3 s, and
//! every multi-row `INSERT` paid the delay. libpq sets the option on every connection.
//!
//! sqlx gives no access to its socket, so after each new connection the hub walks its own file
//! descriptors (`/proc/self/fd`), takes a duplicate of each socket with `pidfd_getfd(2)` (a
//! duplicate shares the socket, and its options), and sets `TCP_NODELAY` on the TCP sockets
//! whose peer is the database port. Linux only, and best effort: where the walk is not
//! possible the connection works as before, only slower, and a warning says so once.
//! Remove this module once sqlx releases the fix.

/// Sets `TCP_NODELAY` on every TCP socket of this process connected to `port`; answers how
/// many sockets it changed.
#[cfg(target_os = "linux")]
pub(crate) fn set_on_sockets_to(port: u16) -> std::io::Result<usize> {
    let mut changed = 0;
    for socket in sockets_to(port)? {
        let socket = socket2::SockRef::from(&socket);
        if !socket.tcp_nodelay()? {
            socket.set_tcp_nodelay(true)?;
            changed += 1;
        }
    }
    Ok(changed)
}

/// Not Linux: nothing to do here (the sockets keep the operating system's default).
#[cfg(not(target_os = "linux"))]
pub(crate) fn set_on_sockets_to(_port: u16) -> std::io::Result<usize> {
    Ok(0)
}

/// Duplicates of this process's TCP sockets whose peer port is `port`.
#[cfg(target_os = "linux")]
pub(crate) fn sockets_to(port: u16) -> std::io::Result<Vec<std::os::fd::OwnedFd>> {
    use rustix::process::{PidfdFlags, PidfdGetfdFlags, getpid, pidfd_getfd, pidfd_open};

    let me = pidfd_open(getpid(), PidfdFlags::empty())?;
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc/self/fd")? {
        let entry = entry?;
        // Entries come and go while the pool connects: skip what vanished or changed.
        let Ok(target) = std::fs::read_link(entry.path()) else {
            continue;
        };
        if !target
            .as_os_str()
            .as_encoded_bytes()
            .starts_with(b"socket:")
        {
            continue;
        }
        let Some(raw) = entry.file_name().to_str().and_then(|n| n.parse().ok()) else {
            continue;
        };
        let Ok(socket) = pidfd_getfd(&me, raw, PidfdGetfdFlags::empty()) else {
            continue;
        };
        let peer = socket2::SockRef::from(&socket)
            .peer_addr()
            .ok()
            .and_then(|a| a.as_socket());
        if peer.is_some_and(|a| a.port() == port) {
            found.push(socket);
        }
    }
    Ok(found)
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    #[test]
    fn sets_nodelay_on_sockets_to_the_port_only() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("address").port();
        let client = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
        let (accepted, _) = listener.accept().expect("accept");
        assert!(
            !client.nodelay().expect("read option"),
            "the default is off"
        );

        assert_eq!(set_on_sockets_to(port).expect("set"), 1);
        assert!(client.nodelay().expect("read option"));
        // The accepted end's peer is the client's ephemeral port, not `port`: untouched.
        assert!(!accepted.nodelay().expect("read option"));
        assert_eq!(set_on_sockets_to(port).expect("set again"), 0, "idempotent");
    }
}
