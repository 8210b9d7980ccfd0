//! The one request the clients make: a GET of a URL with a query string, whose JSON answer (or
//! JSON lines) is decoded into the backend's typed response.

use reqwest::StatusCode;
use serde::de::DeserializeOwned;
use url::Url;

/// Why one query to a backend gave no answer the verifier can read.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    #[error("bad backend URL {base}")]
    Url {
        base: String,
        #[source]
        source: url::ParseError,
    },
    #[error("GET {url} failed")]
    Send {
        url: Url,
        #[source]
        source: reqwest::Error,
    },
    #[error("GET {url} answered {status}: {body}")]
    Status {
        url: Url,
        status: StatusCode,
        body: String,
    },
    #[error("GET {url}: not the expected JSON")]
    Decode {
        url: Url,
        #[source]
        source: serde_json::Error,
    },
}

#[derive(Debug, Clone)]
pub(crate) struct Http {
    client: reqwest::Client,
    base: String,
}

impl Http {
    pub(crate) fn new(base: &str) -> Self {
        Self {
            client: reqwest::Client::new(),
            base: base.trim_end_matches('/').to_owned(),
        }
    }

    /// GET `path` with `query`: the decoded answer of a 2xx.
    pub(crate) async fn get<T: DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, String)],
    ) -> Result<T, QueryError> {
        let (url, status, body) = self.fetch(path, query).await?;
        decode(url, status, &body)
    }

    /// Like [`Http::get`], for an answer in JSON lines (one value per line).
    pub(crate) async fn get_lines<T: DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, String)],
    ) -> Result<Vec<T>, QueryError> {
        let (url, status, body) = self.fetch(path, query).await?;
        check_status(&url, status, &body)?;
        body.lines()
            .filter(|line| !line.trim().is_empty())
            .map(|line| {
                serde_json::from_str(line).map_err(|source| QueryError::Decode {
                    url: url.clone(),
                    source,
                })
            })
            .collect()
    }

    /// Like [`Http::get`], but a 404 is `None`: how Jaeger says it has no such trace.
    pub(crate) async fn find<T: DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, String)],
    ) -> Result<Option<T>, QueryError> {
        let (url, status, body) = self.fetch(path, query).await?;
        if status == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        decode(url, status, &body).map(Some)
    }

    async fn fetch(
        &self,
        path: &str,
        query: &[(&str, String)],
    ) -> Result<(Url, StatusCode, String), QueryError> {
        let base = format!("{}{path}", self.base);
        let url = Url::parse_with_params(&base, query)
            .map_err(|source| QueryError::Url { base, source })?;
        let send = async {
            let response = self.client.get(url.clone()).send().await?;
            let status = response.status();
            Ok::<_, reqwest::Error>((status, response.text().await?))
        };
        match send.await {
            Ok((status, body)) => Ok((url, status, body)),
            Err(source) => Err(QueryError::Send { url, source }),
        }
    }
}

fn check_status(url: &Url, status: StatusCode, body: &str) -> Result<(), QueryError> {
    if status.is_success() {
        return Ok(());
    }
    // Enough of the body to carry the backend's own error message, not a whole page.
    let body = body.chars().take(300).collect();
    Err(QueryError::Status {
        url: url.clone(),
        status,
        body,
    })
}

fn decode<T: DeserializeOwned>(url: Url, status: StatusCode, body: &str) -> Result<T, QueryError> {
    check_status(&url, status, body)?;
    serde_json::from_str(body).map_err(|source| QueryError::Decode { url, source })
}
