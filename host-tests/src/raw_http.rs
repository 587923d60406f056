//! Reading HTTP/1.1 requests off a plain TCP connection, for the hand-written workers of the
//! hostile and fault tests: they answer with exact bytes (or misbehave on purpose), which a
//! real server library would not let them do.

use std::collections::BTreeMap;
use std::io::{self, BufRead};

/// One request as it came: the request line, the headers (names lowercased) and the body
/// (`content-length` or chunked).
#[derive(Debug, Clone, Default)]
pub struct Request {
    pub line: String,
    pub headers: BTreeMap<String, String>,
    pub body: Vec<u8>,
}

impl Request {
    pub fn method(&self) -> &str {
        self.line.split(' ').next().unwrap_or_default()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }
}

/// The next request on the connection; `None` when the client closed it.
pub fn read_request(reader: &mut impl BufRead) -> io::Result<Option<Request>> {
    let mut line = String::new();
    if reader.read_line(&mut line)? == 0 {
        return Ok(None);
    }
    let mut req = Request {
        line: line.trim_end().to_string(),
        ..Request::default()
    };
    loop {
        line.clear();
        reader.read_line(&mut line)?;
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some((k, v)) = l.split_once(':') {
            req.headers
                .insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
    }
    if req
        .header("transfer-encoding")
        .is_some_and(|t| t.contains("chunked"))
    {
        loop {
            line.clear();
            reader.read_line(&mut line)?;
            let n = usize::from_str_radix(line.trim(), 16).unwrap_or(0);
            let mut piece = vec![0; n + 2];
            reader.read_exact(&mut piece)?;
            if n == 0 {
                break;
            }
            req.body
                .extend_from_slice(piece.get(..n).unwrap_or_default());
        }
    } else {
        let n = req
            .header("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        req.body.resize(n, 0);
        reader.read_exact(&mut req.body)?;
    }
    Ok(Some(req))
}

/// A hand-written worker's listener on 127.0.0.1 (a free port): accepts until dropped and runs
/// `serve` on each connection in a thread of its own, blocking.
pub struct ThreadServer {
    pub addr: std::net::SocketAddr,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl ThreadServer {
    pub fn start<F>(serve: F) -> io::Result<ThreadServer>
    where
        F: Fn(std::net::TcpStream) + Send + Sync + 'static,
    {
        use std::sync::atomic::{AtomicBool, Ordering};
        use std::sync::Arc;
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = Arc::clone(&stop);
        let serve = Arc::new(serve);
        std::thread::spawn(move || {
            while !stopped.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((conn, _)) => {
                        let serve = Arc::clone(&serve);
                        std::thread::spawn(move || {
                            let _ = conn.set_nonblocking(false);
                            serve(conn);
                        });
                    }
                    Err(_) => std::thread::sleep(std::time::Duration::from_millis(5)),
                }
            }
        });
        Ok(ThreadServer { addr, stop })
    }
}

impl Drop for ThreadServer {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

/// A hand-written worker: a [`ThreadServer`] whose connections record, per `x-request-id`,
/// what they did (`serve` writes the log), for a test to compare with the filter's figures.
pub struct LoggingWorker<T> {
    pub addr: std::net::SocketAddr,
    log: std::sync::Arc<std::sync::Mutex<BTreeMap<String, T>>>,
    _server: ThreadServer,
}

/// A [`LoggingWorker`]'s connection handler.
pub type Serve<T> =
    fn(std::net::TcpStream, &std::sync::Mutex<BTreeMap<String, T>>) -> io::Result<()>;

impl<T: Clone + Send + 'static> LoggingWorker<T> {
    pub fn start(serve: Serve<T>) -> io::Result<LoggingWorker<T>> {
        let log = std::sync::Arc::new(std::sync::Mutex::new(BTreeMap::new()));
        let l = std::sync::Arc::clone(&log);
        let server = ThreadServer::start(move |conn| {
            let _ = serve(conn, &l);
        })?;
        Ok(LoggingWorker {
            addr: server.addr,
            log,
            _server: server,
        })
    }

    /// What the worker logged for request `id` so far.
    pub fn try_logged(&self, id: &str) -> Option<T> {
        let log = self
            .log
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        log.get(id).cloned()
    }

    /// What the worker logged for request `id`; a panic (the test fails) if it never came.
    pub fn logged(&self, id: &str) -> T {
        self.try_logged(id)
            .unwrap_or_else(|| panic!("{id} never reached the worker"))
    }
}
