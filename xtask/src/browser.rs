//! A page opened in Debian's headless Chromium and driven over the DevTools protocol (a
//! WebSocket of JSON commands and events): enough to load a file, wait for the page to say it
//! is ready, run expressions in it, collect what it logged as errors, and take a screenshot.

use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use base64::Engine as _;
use serde_json::{Value, json};
use tungstenite::{Message, WebSocket};

/// Debian's package, installed by `cargo xtask stack install`.
pub(crate) const CHROMIUM: &str = "/usr/bin/chromium";
/// Longest a page may take to load and render.
const LOAD_TIMEOUT: Duration = Duration::from_secs(60);
/// Longest one DevTools command may take.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);

/// A headless Chromium with one page.
pub(crate) struct Browser {
    child: Child,
    socket: WebSocket<TcpStream>,
    next_id: u64,
    /// The page's session, once attached.
    session: Option<String>,
    /// Console errors, uncaught exceptions and error log entries, as text.
    errors: Vec<String>,
    _profile: TempDir,
}

/// A fresh profile directory, removed with the browser.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl Browser {
    /// Starts Chromium (no network of its own: the machine has none to give it) with an empty
    /// page, and attaches to that page.
    pub(crate) fn start(width: u32, height: u32) -> Result<Self> {
        let stamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let profile = TempDir(
            std::env::temp_dir().join(format!("xtask-chromium-{}-{stamp}", std::process::id())),
        );
        std::fs::create_dir_all(&profile.0)?;
        let mut child = Command::new(CHROMIUM)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--remote-debugging-address=127.0.0.1",
                "--remote-debugging-port=0",
            ])
            .arg(format!("--window-size={width},{height}"))
            .arg(format!("--user-data-dir={}", profile.0.display()))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| {
                format!("cannot start {CHROMIUM} (installed by `cargo xtask stack install`)")
            })?;
        let ws = match devtools_url(&mut child) {
            Ok(ws) => ws,
            Err(e) => {
                let _ = child.kill();
                return Err(e);
            }
        };
        let port = ws
            .trim_start_matches("ws://127.0.0.1:")
            .split('/')
            .next()
            .and_then(|p| p.parse::<u16>().ok())
            .with_context(|| format!("no port in {ws}"))?;
        let stream = TcpStream::connect(("127.0.0.1", port))?;
        stream.set_read_timeout(Some(COMMAND_TIMEOUT))?;
        let (socket, _) = tungstenite::client(ws.as_str(), stream)
            .map_err(|e| anyhow::anyhow!("cannot open the DevTools socket {ws}: {e}"))?;
        let mut browser = Self {
            child,
            socket,
            next_id: 0,
            session: None,
            errors: Vec::new(),
            _profile: profile,
        };
        // One socket to the browser; the page's commands go to its session on it.
        let targets = browser.call("Target.getTargets", json!({}))?;
        let page = targets["targetInfos"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|t| t["type"] == "page")
            .and_then(|t| t["targetId"].as_str())
            .context("Chromium has no page to attach to")?
            .to_owned();
        let attached = browser.call(
            "Target.attachToTarget",
            json!({ "targetId": page, "flatten": true }),
        )?;
        browser.session = Some(
            attached["sessionId"]
                .as_str()
                .context("no DevTools session for the page")?
                .to_owned(),
        );
        for domain in ["Runtime.enable", "Log.enable", "Page.enable"] {
            browser.call(domain, json!({}))?;
        }
        Ok(browser)
    }

    /// Loads `file` and waits until `ready` (a JS expression) is true.
    pub(crate) fn open(&mut self, file: &Path, ready: &str) -> Result<Duration> {
        let file = file
            .canonicalize()
            .with_context(|| format!("no page at {}", file.display()))?;
        let url = format!("file://{}", file.display());
        // Until the navigation commits, `ready` would be asked of the page before.
        let ready_here = format!(
            "location.href.split('#')[0] === {} && ({ready})",
            json!(url)
        );
        let started = Instant::now();
        self.call("Page.navigate", json!({ "url": url }))?;
        while started.elapsed() < LOAD_TIMEOUT {
            if self.eval(&ready_here)? == Value::Bool(true) {
                return Ok(started.elapsed());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        bail!(
            "{} was not ready ({ready}) within {LOAD_TIMEOUT:?}; page errors: {:?}",
            file.display(),
            self.errors
        )
    }

    /// The value of a JS expression (awaited when it is a promise), as JSON.
    pub(crate) fn eval(&mut self, expression: &str) -> Result<Value> {
        let answer = self.call(
            "Runtime.evaluate",
            json!({ "expression": expression, "returnByValue": true, "awaitPromise": true }),
        )?;
        if let Some(e) = answer.get("exceptionDetails") {
            bail!("{expression}: {}", exception_text(e));
        }
        Ok(answer["result"]["value"].clone())
    }

    /// A PNG of what the window shows (as a user sees it: pages lay out lazily off screen).
    pub(crate) fn screenshot(&mut self, to: &Path) -> Result<()> {
        let answer = self.call("Page.captureScreenshot", json!({ "format": "png" }))?;
        let png = base64::engine::general_purpose::STANDARD
            .decode(answer["data"].as_str().context("no screenshot data")?)?;
        std::fs::write(to, png).with_context(|| format!("cannot write {}", to.display()))
    }

    /// What the page reported as errors so far.
    pub(crate) fn errors(&self) -> &[String] {
        &self.errors
    }

    /// Sends one command and reads until its answer, keeping the error events on the way.
    fn call(&mut self, method: &str, params: Value) -> Result<Value> {
        self.next_id += 1;
        let id = self.next_id;
        let mut request = json!({ "id": id, "method": method, "params": params });
        if let Some(session) = &self.session {
            request["sessionId"] = json!(session);
        }
        self.socket
            .send(Message::text(request.to_string()))
            .with_context(|| format!("DevTools {method}"))?;
        let deadline = Instant::now() + COMMAND_TIMEOUT;
        while Instant::now() < deadline {
            let message = self
                .socket
                .read()
                .with_context(|| format!("DevTools {method}: no answer"))?;
            let Message::Text(text) = message else {
                continue;
            };
            let value: Value = serde_json::from_str(text.as_str())?;
            if value["id"] == id {
                if let Some(e) = value.get("error") {
                    bail!("DevTools {method}: {e}");
                }
                return Ok(value["result"].clone());
            }
            self.keep_error(&value);
        }
        bail!("DevTools {method}: no answer within {COMMAND_TIMEOUT:?}")
    }

    fn keep_error(&mut self, event: &Value) {
        let p = &event["params"];
        match event["method"].as_str() {
            Some("Runtime.exceptionThrown") => {
                self.errors.push(exception_text(&p["exceptionDetails"]));
            }
            Some("Runtime.consoleAPICalled") if p["type"] == "error" => {
                let args: Vec<String> = p["args"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|a| {
                        a["value"]
                            .as_str()
                            .map_or_else(|| a.to_string(), str::to_owned)
                    })
                    .collect();
                self.errors
                    .push(format!("console.error: {}", args.join(" ")));
            }
            Some("Log.entryAdded") if p["entry"]["level"] == "error" => {
                self.errors.push(format!(
                    "{}: {} {}",
                    p["entry"]["source"], p["entry"]["text"], p["entry"]["url"]
                ));
            }
            _ => {}
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn exception_text(details: &Value) -> String {
    let description = details["exception"]["description"].as_str();
    format!(
        "{} (line {})",
        description.unwrap_or_else(|| details["text"].as_str().unwrap_or("exception")),
        details["lineNumber"]
    )
}

/// The browser's DevTools socket, from `DevTools listening on ws://127.0.0.1:<port>/devtools/browser/<id>`,
/// which Chromium prints on stderr once it listens.
fn devtools_url(child: &mut Child) -> Result<String> {
    let stderr = child.stderr.take().context("no stderr")?;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut seen = Vec::new();
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(at) = line.find("ws://127.0.0.1:") {
                let _ = tx.send(Ok(line[at..].trim().to_owned()));
                // Go on reading, so that Chromium never blocks on a full pipe.
                continue;
            }
            seen.push(line);
            if seen.len() > 50 {
                seen.remove(0);
            }
        }
        let _ = tx.send(Err(seen.join("\n")));
    });
    match rx.recv_timeout(Duration::from_secs(30)) {
        Ok(Ok(url)) => Ok(url),
        Ok(Err(said)) => bail!("Chromium did not open its DevTools port; it said:\n{said}"),
        Err(_) => bail!("Chromium did not open its DevTools port within 30 s"),
    }
}
