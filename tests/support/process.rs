//! Starting the real `mario-server` binary and waiting until it listens.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// A running `mario-server`; killed when dropped.
pub struct Server {
    child: Child,
    /// `http://127.0.0.1:<port>`.
    pub url: String,
    lines: mpsc::Receiver<String>,
    /// stderr so far.
    pub log: Vec<String>,
}

impl Server {
    /// GET a path; the status and body.
    pub fn get(&self, path: &str) -> (u16, String) {
        let mut r = ureq::get(&format!("{}{path}", self.url))
            .config()
            .http_status_as_error(false)
            .build()
            .call()
            .unwrap();
        (r.status().as_u16(), r.body_mut().read_to_string().unwrap())
    }

    /// POST a JSON body; the status and body.
    pub fn post(&self, path: &str, body: &serde_json::Value) -> (u16, String) {
        let mut r = ureq::post(&format!("{}{path}", self.url))
            .config()
            .http_status_as_error(false)
            .build()
            .header("content-type", "application/json")
            .send(body.to_string())
            .unwrap();
        (r.status().as_u16(), r.body_mut().read_to_string().unwrap())
    }

    /// stderr so far, as one string.
    pub fn stderr(&mut self) -> String {
        while let Ok(l) = self.lines.try_recv() {
            self.log.push(l);
        }
        self.log.join("\n")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// How a start ended: serving, or exited with a code and its stderr.
pub enum Started {
    Serving(Server),
    Exited(Option<i32>, String),
}

/// Starts `mario-server` (`--port 0` is added) in `cwd` with `env` added to an environment
/// cleared of every `MARIO_*` and `HF_*` variable, and waits up to `patience` for it to listen.
pub fn start_server(
    exe: &Path,
    args: &[&str],
    env: &[(&str, &str)],
    cwd: &Path,
    patience: Duration,
) -> Started {
    let mut cmd = Command::new(exe);
    cmd.args(args)
        .args(["--port", "0"])
        .current_dir(cwd)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    for (k, _) in std::env::vars() {
        if k.starts_with("MARIO_") || k.starts_with("HF_") {
            cmd.env_remove(k);
        }
    }
    // no colours in the log we parse
    cmd.env("NO_COLOR", "1");
    cmd.envs(env.iter().copied());
    let mut child = cmd.spawn().unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let t = Instant::now();
    let mut log = Vec::new();
    loop {
        match lines.recv_timeout(Duration::from_millis(100)) {
            Ok(line) => {
                let url = line
                    .split_once("listening on http://")
                    .map(|(_, rest)| rest.split_whitespace().next().unwrap_or("").to_string());
                log.push(line);
                if let Some(addr) = url {
                    return Started::Serving(Server {
                        child,
                        url: format!("http://{addr}"),
                        lines,
                        log,
                    });
                }
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                let status = child.wait().unwrap();
                return Started::Exited(status.code(), log.join("\n"));
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
        }
        if t.elapsed() > patience {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "mario-server {args:?} did not listen within {patience:?}: {}",
                log.join("\n")
            );
        }
    }
}

/// [`start_server`] that must serve: returns once `/ready` answers 200.
pub fn serving(exe: &Path, args: &[&str], env: &[(&str, &str)], cwd: &Path) -> Server {
    let patience = Duration::from_secs(120);
    let mut s = match start_server(exe, args, env, cwd, patience) {
        Started::Serving(s) => s,
        Started::Exited(code, log) => panic!("mario-server {args:?} exited ({code:?}): {log}"),
    };
    let t = Instant::now();
    while s.get("/ready").0 != 200 {
        if t.elapsed() > patience {
            panic!("mario-server {args:?} never got ready: {}", s.stderr());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    s
}
