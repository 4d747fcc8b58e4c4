//! A TCP proxy in front of a real server, which a test can take down (its
//! port refuses connections and open ones are cut), bring back on the same
//! port, or stall (connections stay open but no byte gets through): how a
//! test makes a network dependency fail for one process without stopping
//! the server that other processes and tests share.
//!
//! It runs on its own threads, not on the test's async runtime, so it keeps
//! forwarding while the test blocks (starting a process, running the CLI).

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What the proxy does with traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Bytes flow both ways.
    Forward,
    /// Connections are accepted and kept, but bytes are held, as by a
    /// server that hangs.
    Stall,
    /// Nothing listens on the port and open connections are cut, as when
    /// the server is down.
    Down,
}

/// A running proxy; dropping it cuts every connection.
pub struct Proxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
}

struct Shared {
    upstream: SocketAddr,
    mode: AtomicU8,
    /// Whether the port is bound right now (what [`Proxy::set`] waits for).
    listening: AtomicBool,
    closed: AtomicBool,
    /// Every socket opened, so that going down can cut them.
    sockets: Mutex<Vec<TcpStream>>,
}

impl Shared {
    fn mode(&self) -> Mode {
        match self.mode.load(Ordering::SeqCst) {
            0 => Mode::Forward,
            1 => Mode::Stall,
            _ => Mode::Down,
        }
    }

    fn cut_all(&self) {
        for socket in self.sockets.lock().expect("sockets lock").drain(..) {
            let _ = socket.shutdown(Shutdown::Both);
        }
    }
}

impl Proxy {
    /// Forwards a free port on 127.0.0.1 to `upstream`.
    pub fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("proxy binds");
        let addr = listener.local_addr().expect("proxy address");
        let shared = Arc::new(Shared {
            upstream,
            mode: AtomicU8::new(0),
            listening: AtomicBool::new(true),
            closed: AtomicBool::new(false),
            sockets: Mutex::new(Vec::new()),
        });
        let accepting = shared.clone();
        std::thread::spawn(move || accept_loop(Some(listener), addr, &accepting));
        Self { addr, shared }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Switches mode; returns once the port is closed (down) or open again.
    pub fn set(&self, mode: Mode) {
        let code = match mode {
            Mode::Forward => 0,
            Mode::Stall => 1,
            Mode::Down => 2,
        };
        self.shared.mode.store(code, Ordering::SeqCst);
        if mode == Mode::Down {
            self.shared.cut_all();
        }
        let want_listening = mode != Mode::Down;
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.shared.listening.load(Ordering::SeqCst) != want_listening {
            assert!(
                Instant::now() < deadline,
                "the proxy did not switch to {mode:?}"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        if mode == Mode::Down {
            // Connections accepted just before the port closed.
            self.shared.cut_all();
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.shared.closed.store(true, Ordering::SeqCst);
        self.shared.mode.store(2, Ordering::SeqCst);
        self.shared.cut_all();
    }
}

/// Accepts while the mode allows, drops the listener when down and binds the
/// same port again when back. Non-blocking, so a mode change is seen within
/// a few milliseconds.
fn accept_loop(mut listener: Option<TcpListener>, addr: SocketAddr, shared: &Arc<Shared>) {
    if let Some(l) = &listener {
        l.set_nonblocking(true).expect("non-blocking listener");
    }
    while !shared.closed.load(Ordering::SeqCst) {
        if shared.mode() == Mode::Down {
            listener = None;
            shared.listening.store(false, Ordering::SeqCst);
            std::thread::sleep(Duration::from_millis(5));
            continue;
        }
        let Some(l) = &listener else {
            // std sets SO_REUSEADDR, so the port can be bound again at once.
            if let Ok(l) = TcpListener::bind(addr) {
                l.set_nonblocking(true).expect("non-blocking listener");
                listener = Some(l);
                shared.listening.store(true, Ordering::SeqCst);
            } else {
                std::thread::sleep(Duration::from_millis(20));
            }
            continue;
        };
        match l.accept() {
            Ok((client, _)) => {
                let shared = shared.clone();
                std::thread::spawn(move || connect(client, &shared));
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(_) => std::thread::sleep(Duration::from_millis(5)),
        }
    }
}

fn connect(client: TcpStream, shared: &Arc<Shared>) {
    let _ = client.set_nonblocking(false);
    let Ok(server) = TcpStream::connect_timeout(&shared.upstream, Duration::from_secs(5)) else {
        let _ = client.shutdown(Shutdown::Both);
        return;
    };
    let clones = (
        client.try_clone(),
        server.try_clone(),
        client.try_clone(),
        server.try_clone(),
    );
    let (Ok(c1), Ok(s1), Ok(c2), Ok(s2)) = clones else {
        return;
    };
    shared
        .sockets
        .lock()
        .expect("sockets lock")
        .extend([c1, s1]);
    let up = shared.clone();
    std::thread::spawn(move || pipe(c2, s2, &up));
    pipe(server, client, shared);
}

/// Copies `from` to `to` chunk by chunk, holding each chunk while stalled.
fn pipe(mut from: TcpStream, mut to: TcpStream, shared: &Shared) {
    let mut buf = [0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        while shared.mode() == Mode::Stall {
            std::thread::sleep(Duration::from_millis(10));
        }
        if shared.mode() == Mode::Down || to.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = to.shutdown(Shutdown::Write);
}
