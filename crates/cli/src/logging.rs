//! Log output: tracing to standard error, one line per event, without colours unless it is a
//! terminal.
//!
//! A line reads `TIME LEVEL node=ADDR view=N message key=value...`: the fields of the spans the
//! event is in (a server's driver runs in one naming its node and view), then the event's own.
//! The span fields are kept by a layer of ours, [`SpanFields`], because the fmt layer appends a
//! field recorded a second time instead of replacing it: a view change would log `view=3 view=4`.

use std::fmt::{self, Write as _};
use std::io::IsTerminal;

use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::field::RecordFields;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::time::{FormatTime, SystemTime};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;

/// Sends logs at `level` and above to stderr; `RUST_LOG`, when set, takes precedence.
pub fn init(level: &str) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let lines = tracing_subscriber::fmt::layer()
        .event_format(Line)
        .fmt_fields(Unused)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(SpanFields)
        .with(lines)
        .try_init();
}

/// The fields of one span, in the order declared, each its latest value.
#[derive(Debug, Default)]
struct Fields(Vec<(&'static str, String)>);

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.record_str(field, &format!("{value:?}"));
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        match self.0.iter_mut().find(|(name, _)| *name == field.name()) {
            Some((_, v)) => *v = value.to_owned(),
            None => self.0.push((field.name(), value.to_owned())),
        }
    }
}

/// Keeps every span's [`Fields`] up to date in the span's extensions.
#[derive(Debug)]
struct SpanFields;

impl<S: Subscriber + for<'a> LookupSpan<'a>> Layer<S> for SpanFields {
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let mut fields = Fields::default();
        attrs.record(&mut fields);
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(fields);
        }
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        if let Some(span) = ctx.span(id)
            && let Some(fields) = span.extensions_mut().get_mut::<Fields>()
        {
            values.record(fields);
        }
    }
}

/// The fmt layer's own record of span fields, left empty: [`Line`] reads [`Fields`] instead.
#[derive(Debug)]
struct Unused;

impl<'w> FormatFields<'w> for Unused {
    fn format_fields<R: RecordFields>(&self, _: Writer<'w>, _: R) -> fmt::Result {
        Ok(())
    }
}

/// The format of a line. See the module documentation.
#[derive(Debug)]
struct Line;

impl<S, N> FormatEvent<S, N> for Line
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'w> FormatFields<'w> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut w: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        SystemTime.format_time(&mut w)?;
        let level = *event.metadata().level();
        if w.has_ansi_escapes() {
            write!(w, " \x1b[{}m{level:>5}\x1b[0m", colour(level))?;
        } else {
            write!(w, " {level:>5}")?;
        }
        if let Some(scope) = ctx.event_scope() {
            for span in scope.from_root() {
                if let Some(fields) = span.extensions().get::<Fields>() {
                    for (name, value) in &fields.0 {
                        write!(w, " {name}={value}")?;
                    }
                }
            }
        }
        let mut own = EventFields::default();
        event.record(&mut own);
        writeln!(w, "{}{}", own.message, own.rest)
    }
}

fn colour(level: Level) -> u8 {
    match level {
        Level::ERROR => 31,
        Level::WARN => 33,
        Level::INFO => 32,
        Level::DEBUG => 34,
        Level::TRACE => 35,
    }
}

/// An event's fields as written: the message as it is, then the others as ` name=value`.
#[derive(Debug, Default)]
struct EventFields {
    message: String,
    rest: String,
}

impl Visit for EventFields {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        // Writing to a `String` cannot fail.
        let _ = match field.name() {
            "message" => write!(self.message, " {value:?}"),
            // What the `log` bridge adds (target, file, line): not shown for tracing's either.
            name if name.starts_with("log.") => Ok(()),
            name => write!(self.rest, " {name}={value:?}"),
        };
    }
}

#[cfg(test)]
mod tests {
    use std::io;
    use std::sync::{Arc, Mutex};

    use super::*;

    /// Collects what the subscriber writes.
    #[derive(Clone, Default)]
    struct Sink(Arc<Mutex<Vec<u8>>>);

    impl io::Write for Sink {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_line_carries_the_span_fields_at_their_latest_value() {
        let sink = Sink::default();
        let writer = sink.clone();
        let subscriber = tracing_subscriber::registry().with(SpanFields).with(
            tracing_subscriber::fmt::layer()
                .event_format(Line)
                .fmt_fields(Unused)
                .with_writer(move || writer.clone())
                .with_ansi(false),
        );
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::error_span!("node", node = "127.0.0.1:7001", view = 3u64);
            let _in = span.enter();
            tracing::info!("backup joined");
            span.record("view", 4u64);
            span.record("view", 5u64);
            tracing::warn!(peer = "b", "dropped {}", 7);
        });
        let text = String::from_utf8(sink.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2, "{text}");
        assert!(
            lines[0].ends_with("  INFO node=127.0.0.1:7001 view=3 backup joined"),
            "{text}"
        );
        assert!(
            lines[1].ends_with("  WARN node=127.0.0.1:7001 view=5 dropped 7 peer=\"b\""),
            "{text}"
        );
    }
}
