//! A stand-in for GitHub's API on a loopback port, as Gantry uses it: a commit's full id
//! (`GET /repos/OWNER/NAME/commits/REF` with `Accept: application/vnd.github.sha`), and
//! a commit's tarball (`GET /repos/OWNER/NAME/tarball/SHA`), which redirects to an
//! archive host whose URL carries a short-lived token in its query, as codeload's does.
//! A private repository answers 404 without the right token, as GitHub hides it; the
//! rate limit can be spent (403 with `x-ratelimit-remaining: 0`); the archive's body can
//! be slowed. Every request's line and Authorization header is recorded. Stopped (its
//! thread joined) when dropped.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The query token of the archive host's redirect, which must never appear in a message.
pub const ARCHIVE_QUERY_TOKEN: &str = "codeload-secret-0f3a";

/// A repository: its commits by full id, each with its tarball, and, if private, the
/// token that may read it.
#[derive(Clone, Default)]
pub struct Repository {
    pub commits: BTreeMap<String, Vec<u8>>,
    pub token: Option<String>,
}

#[derive(Default)]
struct State {
    repositories: BTreeMap<String, Repository>,
    rate_limited: bool,
    /// A pause before each 1 KiB of an archive's body.
    slow_body: Option<Duration>,
    requests: Vec<String>,
}

pub struct GitHubStandIn {
    port: u16,
    state: Arc<Mutex<State>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl GitHubStandIn {
    pub fn start() -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let port = listener.local_addr()?.port();
        let state = Arc::new(Mutex::new(State::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let (shared, stopping) = (state.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            for stream in listener.incoming() {
                if stopping.load(Ordering::SeqCst) {
                    break;
                }
                if let Ok(stream) = stream {
                    let shared = shared.clone();
                    std::thread::spawn(move || serve(stream, &shared, port));
                }
            }
        });
        Ok(Self {
            port,
            state,
            stop,
            thread: Some(thread),
        })
    }

    /// `http://127.0.0.1:PORT`: the API's base URL.
    pub fn api_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Adds (or replaces) `repository` (`owner/name`).
    pub fn add(&self, repository: &str, content: Repository) {
        self.state
            .lock()
            .unwrap()
            .repositories
            .insert(repository.to_owned(), content);
    }

    pub fn set_rate_limited(&self, spent: bool) {
        self.state.lock().unwrap().rate_limited = spent;
    }

    pub fn set_slow_body(&self, pause: Option<Duration>) {
        self.state.lock().unwrap().slow_body = pause;
    }

    /// Every request so far: `METHOD PATH | AUTHORIZATION`.
    pub fn requests(&self) -> Vec<String> {
        self.state.lock().unwrap().requests.clone()
    }
}

impl Drop for GitHubStandIn {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wakes the accept loop so it sees the flag.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A commit's tarball as GitHub makes it: `files` (path, content, executable) under one
/// top-level directory named for the repository and commit.
pub fn tarball(repository: &str, commit: &str, files: &[(&str, &str, bool)]) -> Vec<u8> {
    let top = format!("{}-{}", repository.replace('/', "-"), &commit[..7]);
    let mut builder = tar::Builder::new(Vec::new());
    for (path, content, executable) in files {
        let mut header = tar::Header::new_gnu();
        header.set_size(content.len() as u64);
        header.set_mode(if *executable { 0o755 } else { 0o644 });
        header.set_cksum();
        builder
            .append_data(&mut header, format!("{top}/{path}"), content.as_bytes())
            .expect("appending to a tar in memory");
    }
    let tar = builder.into_inner().expect("a tar in memory");
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&tar).expect("gzip in memory");
    gz.finish().expect("gzip in memory")
}

fn serve(stream: TcpStream, state: &Mutex<State>, port: u16) {
    let mut reader = BufReader::new(match stream.try_clone() {
        Ok(clone) => clone,
        Err(_) => return,
    });
    let mut head = Vec::new();
    loop {
        let mut line = String::new();
        match reader.read_line(&mut line) {
            Ok(0) | Err(_) => break,
            Ok(_) if line == "\r\n" => break,
            Ok(_) => head.push(line.trim_end().to_owned()),
        }
    }
    let request = head.first().cloned().unwrap_or_default();
    let header = |name: &str| {
        head.iter()
            .skip(1)
            .filter_map(|line| line.split_once(':'))
            .find(|(key, _)| key.trim().eq_ignore_ascii_case(name))
            .map(|(_, value)| value.trim().to_owned())
    };
    let authorization = header("authorization").unwrap_or_default();
    let path = request.split(' ').nth(1).unwrap_or_default().to_owned();
    let (status, headers, body, slow) = {
        let mut state = state.lock().unwrap();
        state.requests.push(format!(
            "{} {path} | {authorization}",
            request.split(' ').next().unwrap_or_default()
        ));
        answer(&state, &path, &authorization, header("accept"), port)
    };
    let mut out = stream;
    let _ = write!(
        out,
        "HTTP/1.1 {status}\r\n{headers}Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    match slow {
        Some(pause) => {
            for chunk in body.chunks(1024) {
                std::thread::sleep(pause);
                if out.write_all(chunk).is_err() {
                    return;
                }
            }
        }
        None => {
            let _ = out.write_all(&body);
        }
    }
    let _ = out.flush();
}

type Answer = (&'static str, String, Vec<u8>, Option<Duration>);

fn answer(
    state: &State,
    path: &str,
    authorization: &str,
    accept: Option<String>,
    port: u16,
) -> Answer {
    let not_found = || {
        (
            "404 Not Found",
            String::new(),
            br#"{"message":"Not Found"}"#.to_vec(),
            None,
        )
    };
    if let Some(rest) = path.strip_prefix("/codeload/") {
        // /codeload/OWNER/NAME/legacy.tar.gz/SHA?token=...
        let (rest, query) = rest.split_once('?').unwrap_or((rest, ""));
        let parts: Vec<&str> = rest.split('/').collect();
        if query != format!("token={ARCHIVE_QUERY_TOKEN}") || parts.len() != 4 {
            return not_found();
        }
        let repository = format!("{}/{}", parts[0], parts[1]);
        return match state
            .repositories
            .get(&repository)
            .and_then(|repo| repo.commits.get(parts[3]))
        {
            Some(archive) => (
                "200 OK",
                "Content-Type: application/x-gzip\r\n".to_owned(),
                archive.clone(),
                state.slow_body,
            ),
            None => not_found(),
        };
    }
    let Some(rest) = path.strip_prefix("/repos/") else {
        return not_found();
    };
    if state.rate_limited {
        return (
            "403 Forbidden",
            "x-ratelimit-remaining: 0\r\nx-ratelimit-reset: 1767225600\r\n".to_owned(),
            br#"{"message":"API rate limit exceeded"}"#.to_vec(),
            None,
        );
    }
    let parts: Vec<&str> = rest.split('/').collect();
    if parts.len() != 4 {
        return not_found();
    }
    let repository = format!("{}/{}", parts[0], parts[1]);
    let Some(repo) = state.repositories.get(&repository) else {
        return not_found();
    };
    if let Some(token) = &repo.token
        && authorization != format!("Bearer {token}")
    {
        return not_found();
    }
    let wanted = parts[3].to_ascii_lowercase();
    let commit = repo
        .commits
        .keys()
        .find(|full| wanted.len() >= 7 && full.starts_with(&wanted));
    match (parts[2], commit) {
        ("commits", Some(full)) if accept.as_deref() == Some("application/vnd.github.sha") => {
            ("200 OK", String::new(), full.clone().into_bytes(), None)
        }
        ("commits", None) => (
            "422 Unprocessable Entity",
            String::new(),
            br#"{"message":"No commit found for SHA"}"#.to_vec(),
            None,
        ),
        ("tarball", Some(full)) => (
            "302 Found",
            format!(
                "Location: http://localhost:{port}/codeload/{repository}/legacy.tar.gz/{full}?token={ARCHIVE_QUERY_TOKEN}\r\n"
            ),
            Vec::new(),
            None,
        ),
        _ => not_found(),
    }
}
