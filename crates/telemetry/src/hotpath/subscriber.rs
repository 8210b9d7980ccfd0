//! The subscriber for a process whose only output is OTel (no JSON file, no console) and whose
//! filter is by target and level: it keeps each span's state in a pool of its own (sharded_slab's,
//! as the registry's), instead of tracing-subscriber's registry with the [`HotLayer`] on it.
//!
//! The registry keeps, per span, the data every layer may need (its parent, a map of boxed
//! extensions, per-layer filter bits) and dispatches each call through the layer stack; enter
//! and exit, which async code pays on every poll, update a span stack and reference counts.
//! Here a span is one reused slot holding the layer's [`SpanState`], written in place, under an
//! uncontended lock; enter and exit push and pop an id on a per-thread stack, and the filter is
//! decided once per callsite. What the layer does per span and event is the same code either
//! way.

use std::cell::RefCell;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};

use sharded_slab::{Clear, Pool, pool::Ref};
use thread_local::ThreadLocal;
use tracing::span::{Attributes, Id, Record};
use tracing::subscriber::Interest;
use tracing::{Event, Metadata, Subscriber};
use tracing_core::span::Current;
use tracing_subscriber::filter::{LevelFilter, Targets};

use super::layer::{HotLayer, SpanState};
use crate::export::lock;

pub(crate) struct HotSubscriber {
    layer: HotLayer,
    filter: Targets,
    spans: Pool<Slot>,
    /// The spans each thread is in, innermost last.
    stacks: ThreadLocal<RefCell<Vec<Id>>>,
}

/// A span's slot, reused once it closes: the state is written where it lies, not moved in
/// and out (an item is some 500 bytes).
#[derive(Default)]
struct Slot {
    meta: Option<&'static Metadata<'static>>,
    /// `Span` handles to it; the span closes when the last one goes.
    refs: AtomicUsize,
    state: Mutex<SpanState>,
}

impl Clear for Slot {
    fn clear(&mut self) {
        self.meta = None;
        self.state
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }
}

/// The id of a span the pool had no room for: it is not recorded, and nothing else breaks.
const NO_ROOM: u64 = u64::MAX;

/// The pool key of span `id`: ids are keys plus one (an id is never zero).
fn key(id: &Id) -> Option<usize> {
    let id = id.into_u64();
    if id == NO_ROOM {
        return None;
    }
    usize::try_from(id - 1).ok()
}

impl HotSubscriber {
    pub(crate) fn new(layer: HotLayer, filter: Targets) -> Self {
        Self {
            layer,
            filter,
            spans: Pool::new(),
            stacks: ThreadLocal::new(),
        }
    }

    pub(crate) fn layer(&self) -> &HotLayer {
        &self.layer
    }

    /// Runs `f` on the state of the span `id`.
    pub(crate) fn with_state<R>(&self, id: &Id, f: impl FnOnce(&mut SpanState) -> R) -> Option<R> {
        let slot = self.slot(id)?;
        let mut state = lock(&slot.state);
        Some(f(&mut state))
    }

    fn slot(&self, id: &Id) -> Option<Ref<'_, Slot>> {
        self.spans.get(key(id)?)
    }

    fn current(&self) -> Option<Id> {
        self.stacks.get()?.borrow().last().cloned()
    }

    /// The span something new belongs to: its explicit parent, or the current span.
    fn parent(&self, explicit: Option<&Id>, contextual: bool) -> Option<Id> {
        match explicit {
            Some(id) => Some(id.clone()),
            None if contextual => self.current(),
            None => None,
        }
    }
}

impl Subscriber for HotSubscriber {
    fn register_callsite(&self, meta: &'static Metadata<'static>) -> Interest {
        if self.enabled(meta) {
            Interest::always()
        } else {
            Interest::never()
        }
    }

    fn enabled(&self, meta: &Metadata<'_>) -> bool {
        self.filter.would_enable(meta.target(), meta.level())
    }

    fn max_level_hint(&self) -> Option<LevelFilter> {
        <Targets as tracing_subscriber::Layer<Self>>::max_level_hint(&self.filter)
    }

    fn new_span(&self, attrs: &Attributes<'_>) -> Id {
        let parent = self.parent(attrs.parent(), attrs.is_contextual());
        let parent = parent.and_then(|id| self.with_state(&id, |s| s.as_parent()));
        let created = self.spans.create_with(|slot| {
            slot.meta = Some(attrs.metadata());
            *slot.refs.get_mut() = 1;
            let state = slot.state.get_mut().unwrap_or_else(PoisonError::into_inner);
            self.layer.start_span_in(attrs, parent, state);
        });
        match created {
            Some(key) => Id::from_u64(key as u64 + 1),
            None => Id::from_u64(NO_ROOM),
        }
    }

    fn record(&self, span: &Id, values: &Record<'_>) {
        self.with_state(span, |state| self.layer.record(state, values));
    }

    fn record_follows_from(&self, _: &Id, _: &Id) {}

    fn event(&self, event: &Event<'_>) {
        let span = self.parent(event.parent(), event.is_contextual());
        let trace = span
            .as_ref()
            .and_then(|id| self.with_state(id, |s| s.trace()));
        self.layer.log(event, trace);
        if let Some(id) = span
            && let Some(span_event) = HotLayer::span_event(event)
        {
            self.with_state(&id, |s| self.layer.add_span_event(s, span_event));
        }
    }

    fn enter(&self, span: &Id) {
        self.stacks.get_or_default().borrow_mut().push(span.clone());
    }

    fn exit(&self, span: &Id) {
        if let Some(stack) = self.stacks.get() {
            let mut stack = stack.borrow_mut();
            // Spans exit in the reverse order of entering, but need not.
            if stack.last() == Some(span) {
                stack.pop();
            } else if let Some(at) = stack.iter().rposition(|id| id == span) {
                stack.remove(at);
            }
        }
    }

    fn clone_span(&self, span: &Id) -> Id {
        if let Some(slot) = self.slot(span) {
            slot.refs.fetch_add(1, Ordering::Relaxed);
        }
        span.clone()
    }

    fn try_close(&self, span: Id) -> bool {
        let Some(key) = key(&span) else {
            return false;
        };
        let Some(slot) = self.spans.get(key) else {
            return false;
        };
        if slot.refs.fetch_sub(1, Ordering::AcqRel) != 1 {
            return false;
        }
        self.layer.end_span(&mut lock(&slot.state));
        drop(slot);
        self.spans.clear(key);
        true
    }

    fn current_span(&self) -> Current {
        match self
            .current()
            .and_then(|id| Some((self.slot(&id)?.meta?, id)))
        {
            Some((meta, id)) => Current::new(id, meta),
            None => Current::none(),
        }
    }
}
