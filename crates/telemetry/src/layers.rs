//! The tracing-subscriber side: which layers a process gets (spans, OTel logs, the JSON file, the
//! console) and what each one lets through; OTel alone gets a subscriber of its own.

use std::io::IsTerminal;

use tracing::Level;
use tracing_appender::non_blocking::WorkerGuard;
use tracing_subscriber::filter::{EnvFilter, LevelFilter, Targets};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::{Layer, Registry};

use crate::hotpath::layer::HotLayer;
use crate::hotpath::subscriber::HotSubscriber;
use crate::{EXPORT_TARGET, InitError, LogsConfig, jsonlog};

/// Export traffic and the SDK's own diagnostics must never feed back into the OTel pipeline
/// (nor the library's export warnings, [`EXPORT_TARGET`]).
const OTEL_LAYER_EXCLUSIONS: &str =
    "tonic=off,h2=off,hyper=off,tower=off,reqwest=off,opentelemetry=off";

type BoxedLayer = Box<dyn Layer<Registry> + Send + Sync>;

/// The subscriber, not installed, and the JSON file's guard; `otel` is None when the SDK is
/// disabled.
pub(crate) fn build(
    c: &LogsConfig,
    otel: Option<HotLayer>,
) -> Result<(tracing::Dispatch, Option<WorkerGuard>), InitError> {
    let log_filter = |extra: &str| filter(&c.filter, extra);
    let otel_exclusions = format!("{OTEL_LAYER_EXCLUSIONS},{EXPORT_TARGET}=off");
    if c.file.is_none()
        && !c.console
        && let Some(layer) = otel
    {
        // Alone, the OTel layer needs no registry (hotpath/subscriber.rs), and its filter is
        // the subscriber's: per-layer filtering costs about a tenth of an item on the caller's
        // thread (ARCHITECTURE.md).
        let dispatch = match log_filter(&otel_exclusions)? {
            Directives::Targets(targets) => {
                tracing::Dispatch::new(HotSubscriber::new(layer, *targets))
            }
            Directives::Env(env) => {
                tracing::Dispatch::new(Registry::default().with(env).with(layer))
            }
        };
        return Ok((dispatch, None));
    }
    let mut layers: Vec<BoxedLayer> = Vec::new();
    if let Some(layer) = otel {
        layers.push(
            layer
                .with_filter(log_filter(&otel_exclusions)?.per_layer())
                .boxed(),
        );
    }
    let file_guard = match &c.file {
        Some(file) => {
            let (layer, guard) = jsonlog::layer(file)?;
            layers.push(layer.with_filter(log_filter("")?.per_layer()).boxed());
            Some(guard)
        }
        None => None,
    };
    if c.console {
        layers.push(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_ansi(std::io::stderr().is_terminal())
                .with_filter(filter(c.console_directives(), "")?.per_layer())
                .boxed(),
        );
    }
    Ok((
        tracing::Dispatch::new(Registry::default().with(layers)),
        file_guard,
    ))
}

type BoxedFilter = Box<dyn tracing_subscriber::layer::Filter<Registry> + Send + Sync>;

/// Parsed directives. By target and level only (the usual case) they are a static [`Targets`]
/// filter: an [`EnvFilter`] also tracks every span on enter and exit, for span and field
/// directives, under a lock.
enum Directives {
    Targets(Box<Targets>),
    Env(Box<EnvFilter>),
}

impl Directives {
    /// As one layer's filter.
    fn per_layer(self) -> BoxedFilter {
        match self {
            Self::Targets(t) => t,
            Self::Env(e) => e,
        }
    }
}

/// The user's directives plus `extra`; INFO where they say nothing.
fn filter(user: &str, extra: &str) -> Result<Directives, InitError> {
    let mut directives = user_directives(user);
    if !extra.is_empty() {
        directives = format!("{directives},{extra}");
    }
    let env = EnvFilter::builder()
        .with_default_directive(Level::INFO.into())
        .parse(&directives)
        .map_err(|source| InitError::Filter {
            directives: user.to_owned(),
            source,
        })?;
    if directives.contains('[') {
        return Ok(Directives::Env(Box::new(env)));
    }
    let parts = || {
        directives
            .split(',')
            .map(str::trim)
            .filter(|d| !d.is_empty())
    };
    let has_default = parts().any(|d| !d.contains('=') && d.parse::<LevelFilter>().is_ok());
    let targets = if has_default {
        directives.parse::<Targets>()
    } else {
        format!("info,{directives}").parse::<Targets>()
    };
    Ok(match targets {
        Ok(targets) => Directives::Targets(Box::new(targets)),
        Err(_) => Directives::Env(Box::new(env)),
    })
}

/// The user's directives, plus silence for the SDK's internal logs (they repeat on every failed
/// export; the library reports export trouble once itself) unless the user asked for them.
fn user_directives(user: &str) -> String {
    if user.contains("opentelemetry") {
        user.to_owned()
    } else {
        format!("{user},opentelemetry=off")
    }
}
