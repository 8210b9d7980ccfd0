//! A stand-in for Jaeger, Loki and Prometheus on 127.0.0.1:0 that answers with responses recorded
//! from the live backends (tests/fixtures/), so the verifier's real HTTP clients run. The three
//! APIs' paths do not overlap, so one server plays all three.

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{StatusCode, Uri};
use verify::{Endpoints, LogStore};

struct Rule {
    path: String,
    /// A substring of one of the query's values; empty matches any query.
    needle: String,
    status: StatusCode,
    fixture: String,
}

/// A request as the server saw it.
#[derive(Debug, Clone)]
struct Seen {
    path: String,
    query: Vec<(String, String)>,
}

#[derive(Clone, Default)]
struct Shared {
    rules: Arc<Vec<Rule>>,
    seen: Arc<Mutex<Vec<Seen>>>,
}

/// The answers, rule by rule; a later rule overrides an earlier one that matches too.
#[derive(Default)]
pub(crate) struct Fake {
    rules: Vec<Rule>,
}

impl Fake {
    pub(crate) fn answer(self, path: &str, needle: &str, fixture: &str) -> Self {
        self.answer_with(StatusCode::OK, path, needle, fixture)
    }

    pub(crate) fn answer_with(
        mut self,
        status: StatusCode,
        path: &str,
        needle: &str,
        fixture: &str,
    ) -> Self {
        self.rules.push(Rule {
            path: path.to_owned(),
            needle: needle.to_owned(),
            status,
            fixture: fixture.to_owned(),
        });
        self
    }

    pub(crate) async fn serve(self) -> Server {
        let shared = Shared {
            rules: Arc::new(self.rules),
            seen: Arc::default(),
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a port on 127.0.0.1");
        let base = format!("http://{}", listener.local_addr().expect("a bound address"));
        let app = Router::new().fallback(answer).with_state(shared.clone());
        tokio::spawn(async move {
            axum::serve(listener, app)
                .await
                .expect("the fake backend serves")
        });
        Server {
            base,
            seen: shared.seen,
        }
    }
}

async fn answer(
    State(shared): State<Shared>,
    uri: Uri,
    Query(query): Query<Vec<(String, String)>>,
) -> (StatusCode, String) {
    let path = uri.path().to_owned();
    let rule = shared.rules.iter().rev().find(|r| {
        r.path == path && (r.needle.is_empty() || query.iter().any(|(_, v)| v.contains(&r.needle)))
    });
    shared
        .seen
        .lock()
        .expect("the request log")
        .push(Seen { path, query });
    match rule {
        Some(r) => {
            let file = format!(
                "{}/tests/fixtures/{}",
                env!("CARGO_MANIFEST_DIR"),
                r.fixture
            );
            (
                r.status,
                std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{file}: {e}")),
            )
        }
        None => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("no fixture for {uri}"),
        ),
    }
}

pub(crate) struct Server {
    base: String,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Server {
    /// All three backends at this server, the logs in `log_store`.
    pub(crate) fn endpoints(&self, log_store: LogStore) -> Endpoints {
        Endpoints {
            jaeger: self.base.clone(),
            logs: self.base.clone(),
            log_store,
            prometheus: self.base.clone(),
        }
    }

    /// The values of query parameter `key` in the requests to `path`, in order, deduplicated
    /// (polling repeats requests).
    pub(crate) fn params(&self, path: &str, key: &str) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for seen in self
            .seen
            .lock()
            .expect("the request log")
            .iter()
            .filter(|s| s.path == path)
        {
            for (_, v) in seen.query.iter().filter(|(k, _)| k == key) {
                if !out.contains(v) {
                    out.push(v.clone());
                }
            }
        }
        out
    }
}
