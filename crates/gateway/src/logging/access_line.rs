//! The text log's access lines (`codex_gateway::access`, one per request) written by a formatter of their own,
//! byte for byte what tracing-subscriber's default (`Full`) format writes without colours, at a fraction of its
//! cost; every other line, and every line for a terminal (colours), goes to the default format.
//!
//! Why by hand: the default format writes each of an access line's ~20 fields through `write!` with style
//! wrappers, strings through `Debug` (escaped char by char), and the time through a dozen padded integers.
//! Here plain strings are copied between their quotes, integers go through `itoa`, and the time is built from
//! its digits: ~1 us less per request (paired, one-event streams at c=64: 0.988 of the CPU with the default
//! format; docs/performance.md, "Batched log writes"). Anything unusual (a string that needs escaping, a float, a
//! value only `Debug` can write) takes the same `Debug` path the default format does, so the bytes cannot differ
//! (tests below compare the two on the same events).

use std::fmt;
use std::time::SystemTime;

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::FmtContext;
use tracing_subscriber::fmt::format::{Format, FormatEvent, FormatFields, Full, Writer};
use tracing_subscriber::fmt::time::{FormatTime, SystemTime as DefaultTimer};
use tracing_subscriber::registry::LookupSpan;

use crate::record::access_log::ACCESS_TARGET;

/// The text format: access lines by hand, the rest by `inner` (the default format, configured as the gateway's
/// text log is: no target).
pub(crate) struct TextFormat {
    inner: Format<Full, DefaultTimer>,
}

impl TextFormat {
    pub(crate) fn new() -> TextFormat {
        TextFormat { inner: Format::default().with_target(false) }
    }
}

impl<S, N> FormatEvent<S, N> for TextFormat
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(&self, ctx: &FmtContext<'_, S, N>, mut writer: Writer<'_>, event: &Event<'_>) -> fmt::Result {
        let meta = event.metadata();
        // Colours, or a span around the event (the gateway opens none): the default format writes those.
        if meta.target() != ACCESS_TARGET || writer.has_ansi_escapes() || ctx.lookup_current().is_some() {
            return self.inner.format_event(ctx, writer, event);
        }
        write_time(&mut writer, SystemTime::now())?;
        writer.write_str(level_str(*meta.level()))?;
        writer.write_char(' ')?;
        let mut fields = Fields { writer: &mut writer, first: true, result: Ok(()) };
        event.record(&mut fields);
        fields.result?;
        writer.write_char('\n')
    }
}

/// The level as the default format writes it without colours, with the space after the time: five columns.
fn level_str(level: Level) -> &'static str {
    match level {
        Level::TRACE => " TRACE",
        Level::DEBUG => " DEBUG",
        Level::INFO => "  INFO",
        Level::WARN => "  WARN",
        Level::ERROR => " ERROR",
    }
}

/// `2026-11-24T04:11:16.712625Z`: RFC 3339 in UTC with microseconds, as the default timer writes it.
fn write_time(writer: &mut Writer<'_>, now: SystemTime) -> fmt::Result {
    let since_epoch = now.duration_since(std::time::UNIX_EPOCH).ok();
    let t = since_epoch.and_then(|d| time::OffsetDateTime::from_unix_timestamp(d.as_secs() as i64).ok());
    let Some((t, micros)) = t.filter(|t| (0..=9999).contains(&t.year())).zip(since_epoch.map(|d| d.subsec_micros()))
    else {
        // A clock before 1970 or past 9999: the default timer writes those (with a sign).
        return DefaultTimer.format_time(writer);
    };
    let mut buf = *b"0000-00-00T00:00:00.000000Z";
    let mut put = |at: usize, width: usize, mut n: u32| {
        for i in (at..at + width).rev() {
            buf[i] = b'0' + (n % 10) as u8;
            n /= 10;
        }
    };
    put(0, 4, t.year().unsigned_abs());
    put(5, 2, u8::from(t.month()).into());
    put(8, 2, t.day().into());
    put(11, 2, t.hour().into());
    put(14, 2, t.minute().into());
    put(17, 2, t.second().into());
    put(20, 6, micros);
    // Only ASCII digits were written into an ASCII template.
    writer.write_str(std::str::from_utf8(&buf).map_err(|_| fmt::Error)?)
}

/// The event's fields as the default format's visitor writes them without colours: `message` first as it is,
/// then `name=value`, separated by one space; strings quoted and escaped as `Debug` does.
struct Fields<'w, 'a> {
    writer: &'w mut Writer<'a>,
    first: bool,
    result: fmt::Result,
}

impl Fields<'_, '_> {
    /// The separator and `name=` (nothing before the message); false once writing has failed.
    fn start(&mut self, field: &Field) -> bool {
        if self.result.is_err() {
            return false;
        }
        if !std::mem::take(&mut self.first) {
            self.result = self.writer.write_char(' ');
        }
        let name = field.name();
        if name != "message" {
            let name = name.strip_prefix("r#").unwrap_or(name);
            self.result =
                self.result.and_then(|()| self.writer.write_str(name)).and_then(|()| self.writer.write_char('='));
        }
        self.result.is_ok()
    }
}

impl Visit for Fields<'_, '_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        // The message is written unquoted, a string with anything to escape through `Debug`: both as the default
        // format does.
        if field.name() == "message" {
            return self.record_debug(field, &format_args!("{value}"));
        }
        if !plain(value) {
            return self.record_debug(field, &value);
        }
        if self.start(field) {
            self.result = self
                .writer
                .write_char('"')
                .and_then(|()| self.writer.write_str(value))
                .and_then(|()| self.writer.write_char('"'));
        }
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        if self.start(field) {
            self.result = self.writer.write_str(itoa::Buffer::new().format(value));
        }
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        if self.start(field) {
            self.result = self.writer.write_str(itoa::Buffer::new().format(value));
        }
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        if self.start(field) {
            self.result = self.writer.write_str(if value { "true" } else { "false" });
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if self.start(field) {
            self.result = write!(self.writer, "{value:?}");
        }
    }
}

/// Whether `Debug` writes this string as it is between its quotes: printable ASCII without `"` or `\`.
fn plain(s: &str) -> bool {
    s.bytes().all(|b| (b' '..=b'~').contains(&b) && b != b'"' && b != b'\\')
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logging::capture::Captured;

    /// Every access line shape the gateway logs, and strings that must be escaped, each logged once through
    /// the default format and once through [`TextFormat`].
    fn log_all() {
        for (key, model, ttfb, error) in [
            (Some("key_4919dc814990"), Some("gpt-5.4"), Some(8.338), None),
            (None, None, None, Some("header_timeout")),
            (Some("quote\"d \\ back"), Some("tab\there ünï \u{1b}[31m"), Some(0.0), Some("x")),
            (Some(""), Some("new\nline"), Some(1003.285), None),
        ] {
            tracing::info!(
                target: "codex_gateway::access",
                request_id = %"1f1c2b87-f133-4772-b1a6-2257e3d86f34",
                api = "chat",
                route = %"/v1/chat/completions",
                status = 200u16,
                error = error,
                key = key,
                model = model,
                stream = true,
                attempts = 1u32,
                failovers = 0u32,
                input_tokens = 73u64,
                negative = -5i64,
                ttfb_ms = ttfb,
                ms = 11.772,
                disconnected = false,
                "request"
            );
        }
        tracing::warn!(target: "codex_gateway::access", status = 499u16, "request");
        // Not access lines: the default format either way.
        tracing::info!(account = "acc-1", "token refreshed");
        tracing::warn!("usage ledger: cannot save 3 request records: {}", "boom");
    }

    type Fmt = tracing_subscriber::fmt::format::DefaultFields;

    /// The lines [`log_all`] writes through `format`.
    fn lines(format: impl FormatEvent<tracing_subscriber::Registry, Fmt> + Send + Sync + 'static) -> Vec<String> {
        let buffer = Captured::default();
        let layer = tracing_subscriber::fmt::layer().event_format(format).with_writer(buffer.clone()).with_ansi(false);
        let subscriber = tracing_subscriber::layer::SubscriberExt::with(tracing_subscriber::registry(), layer);
        tracing::subscriber::with_default(subscriber, log_all);
        buffer.text().lines().map(str::to_string).collect()
    }

    /// The same events give the same bytes through both formats, the time aside (each reads the clock): its shape
    /// is checked instead, and that it parses as RFC 3339 close to now.
    #[test]
    fn access_lines_are_the_default_formats_bytes() {
        let ours = lines(TextFormat::new());
        let default = lines(Format::default().with_target(false));
        assert_eq!(ours.len(), 7, "{ours:#?}");
        assert_eq!(ours.len(), default.len());
        for (a, b) in ours.iter().zip(&default) {
            let (time_a, rest_a) = a.split_at(27);
            let (time_b, rest_b) = b.split_at(27);
            assert_eq!(rest_a, rest_b);
            for t in [time_a, time_b] {
                let parsed = time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339);
                let age = time::OffsetDateTime::now_utc() - parsed.unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
                assert!(age.whole_seconds().abs() < 60 && t.len() == 27 && t.ends_with('Z'), "{t}");
            }
        }
        assert!(ours[0].ends_with(
            "  INFO request request_id=1f1c2b87-f133-4772-b1a6-2257e3d86f34 api=\"chat\" route=/v1/chat/completions \
             status=200 key=\"key_4919dc814990\" model=\"gpt-5.4\" stream=true attempts=1 failovers=0 \
             input_tokens=73 negative=-5 ttfb_ms=8.338 ms=11.772 disconnected=false"
        ), "{}", ours[0]);
        assert!(ours[2].contains(r#"key="quote\"d \\ back" model="tab\there ünï \u{1b}[31m""#), "{}", ours[2]);
    }

    /// The time as the default timer writes it, for fixed instants (the digits, the padding, the microseconds).
    #[test]
    fn the_time_is_written_digit_for_digit() {
        let at = |secs: u64, micros: u32| {
            let mut s = String::new();
            let now = std::time::UNIX_EPOCH + std::time::Duration::new(secs, micros * 1000 + 999);
            write_time(&mut Writer::new(&mut s), now).map(|()| s)
        };
        assert_eq!(at(0, 0).as_deref(), Ok("1970-01-01T00:00:00.000000Z"));
        assert_eq!(at(1_795_496_476, 712_625).as_deref(), Ok("2026-11-24T05:01:16.712625Z"));
        assert_eq!(at(1_798_761_599, 999_999).as_deref(), Ok("2026-12-31T23:59:59.999999Z"));
        assert_eq!(at(951_782_400, 5).as_deref(), Ok("2000-02-29T00:00:00.000005Z"));
    }
}
