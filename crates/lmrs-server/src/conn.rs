//! Connections: the accept loop, with the limits that keep one client from holding the server.
//!
//! `axum::serve` has no timeouts, so a client that opens a connection and sends nothing, or
//! trickles its headers a byte at a time (slowloris), holds a task and a file descriptor for
//! ever, before auth is even checked. This loop serves each connection with hyper's HTTP/1
//! builder directly and bounds it:
//! - **headers and idle keep-alive**: hyper's header-read timeout runs from the moment the
//!   connection waits for a request head, so it closes both a connection that never completes
//!   its headers and an idle keep-alive connection (`--header-timeout`);
//! - **bodies**: the JSON extractor reads the whole body under `--body-timeout` (routes.rs);
//! - **how many**: at most `--max-connections` are served at once; more wait in the kernel's
//!   backlog until one closes, so the process never runs out of descriptors (the soft
//!   `RLIMIT_NOFILE` is raised to the hard limit at startup, see [`raise_fd_limit`]).
//!
//! Shutdown: when `stop` fires, the loop stops accepting and every connection is told to close
//! after its in-flight request ([`hyper::server::conn::http1::Connection::graceful_shutdown`]);
//! [`serve`] returns once the last one has.

use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};

/// Descriptors kept free for everything that is not a client connection (model files, the
/// listener, stdio, the runtime's own).
pub const RESERVED_FDS: u64 = 64;

/// The per-connection limits.
#[derive(Debug, Clone, Copy)]
pub struct ConnLimits {
    /// Longest wait for a complete request head, also on an idle keep-alive connection.
    pub header_timeout: Duration,
    /// Most connections served at once.
    pub max_connections: usize,
}

/// Raise the soft open-files limit to the hard limit and return the soft limit now in force
/// (`None` where it cannot be read). A server that holds one descriptor per client should not
/// stop answering at the common default of 1,024.
pub fn raise_fd_limit() -> Option<u64> {
    #[cfg(unix)]
    {
        rlimit::increase_nofile_limit(u64::MAX).ok()
    }
    #[cfg(not(unix))]
    {
        None
    }
}

/// The connection cap that fits `fd_limit` descriptors: `wanted`, or fewer (with the reason)
/// when the descriptors would run out first.
pub fn fit_connections(wanted: usize, fd_limit: Option<u64>) -> (usize, Option<String>) {
    let Some(limit) = fd_limit else {
        return (wanted, None);
    };
    let room = limit.saturating_sub(RESERVED_FDS).max(1);
    if (wanted as u64) <= room {
        return (wanted, None);
    }
    let fitted = usize::try_from(room).unwrap_or(usize::MAX);
    (
        fitted,
        Some(format!(
            "--max-connections {wanted} lowered to {fitted}: the open-files limit is {limit} \
             (raise it with `ulimit -n`)"
        )),
    )
}

/// Resolves when `stop` turns true (or its sender is gone). A function of its own so that the
/// watch guard it borrows is dropped before the caller's next await (the future stays `Send`).
async fn stopped(mut stop: watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// Serve `router` on `listener` until `stop` turns true, then close every connection once its
/// in-flight request is answered; returns when the last connection has closed.
pub async fn serve(
    listener: TcpListener,
    router: axum::Router,
    limits: ConnLimits,
    stop: watch::Receiver<bool>,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .keep_alive(true);
    let builder = Arc::new(builder);
    loop {
        // Wait for a free slot before accepting: at the cap, new clients queue in the backlog.
        let permit = tokio::select! {
            p = slots.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
            _ = stopped(stop.clone()) => break,
        };
        let (stream, _peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(conn) => conn,
                Err(e) => {
                    // EMFILE, ECONNABORTED...: transient; wait a little instead of spinning.
                    eprintln!("lmrs serve: accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stopped(stop.clone()) => break,
        };
        let _ = stream.set_nodelay(true);
        let service = TowerToHyperService::new(router.clone());
        let builder = builder.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            let conn = builder.serve_connection(TokioIo::new(stream), service);
            tokio::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => {}
                _ = stopped(stop) => {
                    conn.as_mut().graceful_shutdown();
                    let _ = conn.await;
                }
            }
            drop(permit);
        });
    }
    drop(listener);
    // Every connection task holds a permit until it ends: all permits back means all closed.
    let all = u32::try_from(limits.max_connections.max(1)).unwrap_or(u32::MAX);
    let _ = slots.acquire_many(all).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_connection_cap_fits_the_descriptor_limit() {
        assert_eq!(fit_connections(512, Some(1 << 20)), (512, None));
        assert_eq!(fit_connections(512, None), (512, None));
        let (n, why) = fit_connections(4096, Some(1024));
        assert_eq!(n, 1024 - RESERVED_FDS as usize);
        assert!(why.unwrap().contains("open-files limit is 1024"));
        assert_eq!(fit_connections(10, Some(3)).0, 1);
    }
}
