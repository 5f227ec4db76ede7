//! Maintenance windows: the weekly wall-clock periods in which an endpoint may *start* an upgrade.
//!
//! Operators think in local office time ("weeknights 01:00 to 05:00 in Berlin"), so a window is
//! judged in the civil (wall-clock) time of its own time zone and daylight saving time is left to
//! the time zone database rather than to arithmetic on offsets. A window only gates the start of
//! an upgrade; an upgrade that started inside a window may run past its end.
//!
//! The human-facing form is a spec string such as `Mon-Fri 01:00-05:00 Europe/Berlin`, parsed once
//! by [`Window::parse`] into a validated [`Window`]. Like the rest of this crate, nothing here
//! reads the clock: every question takes the instant it is about.

use std::fmt;
use std::str::FromStr;

use jiff::civil::{DateTime, Time, Weekday};
use jiff::tz::{AmbiguousOffset, TimeZone};
use jiff::{SignedDuration, Timestamp};

/// Day abbreviations in Monday-first order; the index is jiff's Monday-zero weekday offset.
const DAY_NAMES: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];

/// Bit set with one bit for every day of the week.
const ALL_DAYS: u8 = 0b111_1111;

const MINUTES_PER_DAY: u16 = 24 * 60;

/// How far [`Window::next_open`] looks ahead. A window opens at least once a week, but a weekly
/// window that lies entirely inside a spring-forward gap does not exist that week, so the next
/// opening can be up to two weeks away; 16 days covers that plus a day of slack for offsets.
const SEARCH_HORIZON_DAYS: i16 = 16;

/// The grammar, repeated in error messages so that each one tells the user what to write.
const EXPECTED_FORM: &str = "expected `DAYS HH:MM-HH:MM [TIME_ZONE]`, e.g. `Mon-Fri 01:00-05:00 Europe/Berlin`";

/// A weekly maintenance window, judged in the civil time of its time zone.
///
/// A window that crosses midnight (start later than end, e.g. `Fri 22:00-04:00`) belongs to the
/// day it starts on: it is open Friday 22:00 through Saturday 04:00, not Friday 00:00-04:00.
/// Start is inclusive and end is exclusive.
///
/// Because openness is judged on the wall clock, daylight saving time changes the real length of
/// a window: in Europe/Berlin on the spring-forward day `01:00-05:00` lasts 3 real hours and on
/// the fall-back day 5 real hours, and a window lying wholly inside a skipped hour does not exist
/// that day.
#[derive(Clone)]
pub struct Window {
    /// Days on which the window starts; bit `i` is the day with Monday-zero offset `i`.
    days: u8,
    /// Minute of the day at which the window opens, `0..MINUTES_PER_DAY`.
    start_min: u16,
    /// Minute of the day at which the window closes, `1..=MINUTES_PER_DAY`. Midnight is stored
    /// as `MINUTES_PER_DAY` (24:00) so that `22:00-00:00` and `22:00-24:00` are the same window
    /// and `start_min > end_min` means exactly "crosses midnight".
    end_min: u16,
    tz: TimeZone,
    /// Canonical spec, computed once because it is also the identity used by `PartialEq`.
    spec: String,
}

/// Why a window spec was rejected. Every message names the offending text and what was expected.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum WindowError {
    /// The spec was empty or only whitespace.
    #[error("empty window spec: {EXPECTED_FORM}")]
    Empty,
    /// The spec had days but no time range.
    #[error("window spec `{spec}` has no time range: {EXPECTED_FORM}")]
    MissingTimes {
        /// The whole spec as given.
        spec: String,
    },
    /// Something followed the time zone.
    #[error("unexpected `{extra}` after the time zone in `{spec}`: {EXPECTED_FORM}")]
    TrailingInput {
        /// The whole spec as given.
        spec: String,
        /// The words after the time zone.
        extra: String,
    },
    /// A day name was not one of the seven abbreviations.
    #[error("unknown day `{day}`: expected Mon, Tue, Wed, Thu, Fri, Sat, Sun")]
    UnknownDay {
        /// The word that is not a day.
        day: String,
    },
    /// The day list had an empty item, e.g. `Mon,,Tue` or a trailing comma.
    #[error("empty day in `{days}`: expected days separated by single commas, e.g. `Mon,Wed-Fri`")]
    EmptyDay {
        /// The whole day list.
        days: String,
    },
    /// A day range did not have exactly two ends, e.g. `Mon-` or `Mon-Tue-Wed`.
    #[error("invalid day range `{range}`: expected two days joined by `-`, e.g. `Mon-Fri`")]
    BadDayRange {
        /// The range as given.
        range: String,
    },
    /// A day range started and ended on the same day, which could mean one day or the whole week.
    #[error("day range `{range}` starts and ends on the same day: write `{day}` for one day or `daily` for every day")]
    SameDayRange {
        /// The range as given.
        range: String,
        /// The canonical name of the day.
        day: String,
    },
    /// The time range was not two times joined by `-`.
    #[error("invalid time range `{range}`: expected HH:MM-HH:MM, e.g. `01:00-05:00`")]
    BadTimeRange {
        /// The range as given.
        range: String,
    },
    /// A time was not a valid 24-hour `HH:MM`.
    #[error("invalid time `{time}`: expected HH:MM from 00:00 to 23:59, or 24:00 as an end")]
    BadTime {
        /// The time as given.
        time: String,
    },
    /// The window started at 24:00, which is the next day's 00:00 and would move the start day.
    #[error(
        "window `{range}` starts at 24:00: expected a start from 00:00 to 23:59; write 00:00 on the following day"
    )]
    StartAt24 {
        /// The time range as given.
        range: String,
    },
    /// Start and end were the same time, so the window would never be open.
    #[error("empty window `{range}`: start and end are the same time; expected different times, or 00:00-24:00 for a whole day")]
    EmptyWindow {
        /// The time range as given.
        range: String,
    },
    /// The time zone is not in the bundled IANA database.
    #[error("unknown time zone `{name}`: expected an IANA name such as `Europe/Berlin` or `UTC`")]
    UnknownTimeZone {
        /// The name as given.
        name: String,
    },
}

impl Window {
    /// Parses a window spec: `DAYS HH:MM-HH:MM [TIME_ZONE]`, fields separated by whitespace.
    ///
    /// - `DAYS` is `daily` or `*` for every day, or a comma-separated list of day abbreviations
    ///   (`Mon` … `Sun`, case-insensitive) and ranges, which may wrap (`Fri-Mon`). These are the
    ///   days on which the window *starts*.
    /// - `HH:MM-HH:MM` is a 24-hour start (inclusive, 00:00..=23:59) and end (exclusive,
    ///   00:00..=24:00). An end earlier than the start crosses midnight into the next day.
    ///   Start equal to end is rejected as an empty window.
    /// - `TIME_ZONE` is an IANA name (`Europe/Berlin`, `UTC`, case-insensitive); it defaults to UTC.
    ///
    /// Examples: `Mon-Fri 01:00-05:00 Europe/Berlin`, `Sat,Sun 22:00-04:00 UTC`,
    /// `daily 01:00-05:00 America/New_York`, `Mon,Wed-Fri 23:30-00:30`.
    pub fn parse(spec: &str) -> Result<Window, WindowError> {
        let words: Vec<&str> = spec.split_whitespace().collect();
        let (days_word, times_word, tz_word) = match words.as_slice() {
            [] => return Err(WindowError::Empty),
            [_] => return Err(WindowError::MissingTimes { spec: spec.trim().to_owned() }),
            [days, times] => (*days, *times, None),
            [days, times, tz] => (*days, *times, Some(*tz)),
            [_, _, _, extra @ ..] => {
                return Err(WindowError::TrailingInput { spec: spec.trim().to_owned(), extra: extra.join(" ") })
            }
        };
        let days = parse_days(days_word)?;
        let (start_min, end_min) = parse_time_range(times_word)?;
        let (tz, tz_name) = match tz_word {
            None => (TimeZone::UTC, "UTC".to_owned()),
            Some(name) => {
                let tz = TimeZone::get(name).map_err(|_| WindowError::UnknownTimeZone { name: name.to_owned() })?;
                // Prefer the database's spelling so that `europe/berlin` and `Europe/Berlin`
                // give the same canonical spec.
                let tz_name = tz.iana_name().unwrap_or(name).to_owned();
                (tz, tz_name)
            }
        };
        let spec = format!("{} {}-{} {}", format_days(days), format_minute(start_min), format_minute(end_min), tz_name);
        Ok(Window { days, start_min, end_min, tz, spec })
    }

    /// True when `at` falls inside the window, judged in the window's civil time.
    ///
    /// During a fall-back hour the wall clock shows the same times twice, and the window is open
    /// during both; during a spring-forward gap the skipped wall-clock times are never open.
    pub fn is_open(&self, at: Timestamp) -> bool {
        self.is_open_civil(self.tz.to_datetime(at))
    }

    /// Returns `at` itself when the window is open at `at`, else the earliest instant after `at`
    /// at which it is open.
    ///
    /// The result is the exact instant of opening. Usually that is the start time on a start
    /// day; when that wall-clock time is skipped by a spring-forward change it is the instant of
    /// the change, if the wall clock then lands inside the window (for `02:30-04:00` in
    /// Europe/Berlin on the spring-forward day that is 03:00 CEST), and otherwise the window
    /// does not exist that day. A fall-back change that turns the wall clock back into the
    /// window reopens it at the instant of the change.
    ///
    /// Looks at most 16 days ahead and returns `None` when nothing opens within that horizon,
    /// which a valid window does not do in any real time zone, or when the search runs past the
    /// end of the representable time range.
    pub fn next_open(&self, at: Timestamp) -> Option<Timestamp> {
        if self.is_open(at) {
            return Some(at);
        }
        let limit =
            at.checked_add(SignedDuration::from_hours(24 * i64::from(SEARCH_HORIZON_DAYS))).unwrap_or(Timestamp::MAX);
        // The open instants form half-open intervals of real time. Each interval begins either
        // where the wall clock reads the start time on a start day, or at a time zone transition
        // that makes the wall clock jump into the window. So the earliest opening is the
        // smallest open candidate of those two kinds; no stepping through time is needed.
        let mut best: Option<Timestamp> = None;
        let mut consider = |candidate: Timestamp| {
            if candidate > at && candidate <= limit && best.is_none_or(|b| candidate < b) && self.is_open(candidate) {
                best = Some(candidate);
            }
        };

        let first = self.tz.to_datetime(at).date();
        // Yesterday is included because a large negative offset change could make yesterday's
        // start land after `at`; it costs one lookup.
        let mut date = first.yesterday().unwrap_or(first);
        for _ in 0..=SEARCH_HORIZON_DAYS + 1 {
            if self.starts_on(date.weekday()) {
                let dt = date.to_datetime(self.start_time());
                match self.tz.to_ambiguous_timestamp(dt).offset() {
                    AmbiguousOffset::Unambiguous { offset } => {
                        if let Ok(t) = offset.to_timestamp(dt) {
                            consider(t);
                        }
                    }
                    // The start time does not exist that day; if the window exists at all that
                    // day, it opens at the transition, which the loop below considers.
                    AmbiguousOffset::Gap { .. } => {}
                    // The start time happens twice; the first one after `at` that is open wins.
                    AmbiguousOffset::Fold { before, after } => {
                        for offset in [before, after] {
                            if let Ok(t) = offset.to_timestamp(dt) {
                                consider(t);
                            }
                        }
                    }
                }
            }
            date = match date.tomorrow() {
                Ok(next) => next,
                Err(_) => break,
            };
        }
        for transition in self.tz.following(at) {
            let t = transition.timestamp();
            if t > limit {
                break;
            }
            consider(t);
        }
        best
    }

    /// The canonical spec, which [`Window::parse`] turns back into an equal window.
    ///
    /// Days are listed from Monday (a run through Sunday into Monday is kept as one wrapping
    /// range such as `Fri-Mon`), runs of three or more days as ranges, every day as `daily`;
    /// a midnight end is written `24:00`; the time zone is always present (`UTC` by default).
    pub fn spec(&self) -> String {
        self.spec.clone()
    }

    /// The time zone the window is judged in, e.g. to show an opening instant in local time.
    pub fn time_zone(&self) -> &TimeZone {
        &self.tz
    }

    fn starts_on(&self, day: Weekday) -> bool {
        self.days & day_bit(day) != 0
    }

    fn start_time(&self) -> Time {
        // start_min < 24 * 60 is checked at parse time, so both fit their ranges.
        Time::constant((self.start_min / 60) as i8, (self.start_min % 60) as i8, 0, 0)
    }

    fn is_open_civil(&self, dt: DateTime) -> bool {
        // Whole minutes suffice: the bounds are whole minutes, so `minute >= start_min` holds
        // exactly when the full time (seconds and all) is at or after the start, and likewise
        // for the exclusive end.
        let minute = dt.hour() as u16 * 60 + dt.minute() as u16;
        let today = dt.date().weekday();
        if self.start_min < self.end_min {
            self.starts_on(today) && self.start_min <= minute && minute < self.end_min
        } else {
            // Crossing midnight: the evening part belongs to today's window, the morning part to
            // the window that started yesterday.
            (self.starts_on(today) && minute >= self.start_min)
                || (self.starts_on(today.previous()) && minute < self.end_min)
        }
    }
}

impl FromStr for Window {
    type Err = WindowError;

    fn from_str(spec: &str) -> Result<Window, WindowError> {
        Window::parse(spec)
    }
}

impl fmt::Display for Window {
    /// Writes the canonical spec.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.spec)
    }
}

impl fmt::Debug for Window {
    // The spec says everything; jiff's time zone debug output would only add noise.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Window").field(&self.spec).finish()
    }
}

impl PartialEq for Window {
    // The canonical spec determines days, times and zone name, so it is the window's identity.
    fn eq(&self, other: &Window) -> bool {
        self.spec == other.spec
    }
}

impl Eq for Window {}

fn day_bit(day: Weekday) -> u8 {
    1 << day.to_monday_zero_offset()
}

fn parse_day(word: &str) -> Result<usize, WindowError> {
    DAY_NAMES
        .iter()
        .position(|name| name.eq_ignore_ascii_case(word))
        .ok_or_else(|| WindowError::UnknownDay { day: word.to_owned() })
}

fn parse_days(word: &str) -> Result<u8, WindowError> {
    if word == "*" || word.eq_ignore_ascii_case("daily") {
        return Ok(ALL_DAYS);
    }
    let mut days = 0u8;
    for item in word.split(',') {
        if item.is_empty() {
            return Err(WindowError::EmptyDay { days: word.to_owned() });
        }
        match item.split('-').collect::<Vec<_>>().as_slice() {
            [single] => days |= 1 << parse_day(single)?,
            [from, to] if !from.is_empty() && !to.is_empty() => {
                let (from, to) = (parse_day(from)?, parse_day(to)?);
                if from == to {
                    return Err(WindowError::SameDayRange { range: item.to_owned(), day: DAY_NAMES[from].to_owned() });
                }
                // Walk forward from `from`, wrapping past Sunday, so `Fri-Mon` is Fri..Mon.
                let mut day = from;
                loop {
                    days |= 1 << day;
                    if day == to {
                        break;
                    }
                    day = (day + 1) % 7;
                }
            }
            _ => return Err(WindowError::BadDayRange { range: item.to_owned() }),
        }
    }
    Ok(days)
}

/// Parses `HH:MM-HH:MM` into (start, end) minutes of the day, with a midnight end as 24:00.
fn parse_time_range(word: &str) -> Result<(u16, u16), WindowError> {
    let Some((start, end)) = word.split_once('-') else {
        return Err(WindowError::BadTimeRange { range: word.to_owned() });
    };
    if start.is_empty() || end.is_empty() {
        return Err(WindowError::BadTimeRange { range: word.to_owned() });
    }
    let (start_min, end_min) = (parse_minute(start)?, parse_minute(end)?);
    if start_min == MINUTES_PER_DAY {
        return Err(WindowError::StartAt24 { range: word.to_owned() });
    }
    if start_min == end_min {
        return Err(WindowError::EmptyWindow { range: word.to_owned() });
    }
    // Checked after the empty-window test so that `00:00-00:00` is still rejected rather than
    // read as a whole day.
    let end_min = if end_min == 0 { MINUTES_PER_DAY } else { end_min };
    Ok((start_min, end_min))
}

/// Parses a strict `HH:MM` (two digits each) into minutes of the day; accepts `24:00`.
fn parse_minute(word: &str) -> Result<u16, WindowError> {
    let bad = || WindowError::BadTime { time: word.to_owned() };
    let bytes = word.as_bytes();
    let [h1, h2, b':', m1, m2] = bytes else {
        return Err(bad());
    };
    let digit = |b: u8| {
        if b.is_ascii_digit() {
            Ok(u16::from(b - b'0'))
        } else {
            Err(bad())
        }
    };
    let hour = digit(*h1)? * 10 + digit(*h2)?;
    let minute = digit(*m1)? * 10 + digit(*m2)?;
    match (hour, minute) {
        (24, 0) => Ok(MINUTES_PER_DAY),
        (0..=23, 0..=59) => Ok(hour * 60 + minute),
        _ => Err(bad()),
    }
}

fn format_minute(minute: u16) -> String {
    format!("{:02}:{:02}", minute / 60, minute % 60)
}

fn format_days(days: u8) -> String {
    if days == ALL_DAYS {
        return "daily".to_owned();
    }
    let has = |day: usize| days & (1 << (day % 7)) != 0;
    // Begin at the first day that starts a run, so a run through Sunday into Monday stays whole.
    // One exists because the set is neither empty (parse rejects that) nor full (handled above).
    let Some(first) = (0..7).find(|&day| has(day) && !has(day + 6)) else {
        return "daily".to_owned();
    };
    let mut parts = Vec::new();
    let mut offset = 0;
    while offset < 7 {
        let day = first + offset;
        if !has(day) {
            offset += 1;
            continue;
        }
        let mut len = 1;
        while offset + len < 7 && has(day + len) {
            len += 1;
        }
        let (from, to) = (DAY_NAMES[day % 7], DAY_NAMES[(day + len - 1) % 7]);
        parts.push(match len {
            1 => from.to_owned(),
            2 => format!("{from},{to}"),
            _ => format!("{from}-{to}"),
        });
        offset += len;
    }
    parts.join(",")
}

#[cfg(test)]
// Tests unwrap freely: their inputs are literals, and a panic is the failure report.
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use expect_test::{expect, Expect};

    /// Parses `spec` and shows either the canonical spec or the error message; every success
    /// must also round-trip through its canonical spec.
    fn check_parse(spec: &str, expect: Expect) {
        let actual = match Window::parse(spec) {
            Ok(window) => {
                let again = Window::parse(&window.spec()).unwrap();
                assert_eq!(again, window, "canonical spec must round-trip");
                assert_eq!(again.spec(), window.spec());
                assert_eq!(window.to_string(), window.spec());
                assert_eq!(spec.parse::<Window>().unwrap(), window);
                window.spec()
            }
            Err(err) => format!("error: {err}"),
        };
        expect.assert_eq(&actual);
    }

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn show(window: &Window, at: Timestamp) -> String {
        at.to_zoned(window.time_zone().clone()).strftime("%a %Y-%m-%d %H:%M:%S%.f%:z").to_string()
    }

    /// Shows, for each instant, its wall-clock time in the window's zone and whether it is open.
    fn check_open(spec: &str, instants: &[&str], expect: Expect) {
        let window = Window::parse(spec).unwrap();
        let actual: String = instants
            .iter()
            .map(|s| {
                let at = ts(s);
                let state = if window.is_open(at) { "open" } else { "closed" };
                format!("{}  {state}\n", show(&window, at))
            })
            .collect();
        expect.assert_eq(&actual);
    }

    /// Scans `[from, to)` minute by minute with `is_open` and lists the open spans with their
    /// real length, which makes day rules and DST lengths visible at a glance.
    fn check_spans(spec: &str, from: &str, to: &str, expect: Expect) {
        let window = Window::parse(spec).unwrap();
        let (mut at, to) = (ts(from), ts(to));
        let mut actual = String::new();
        let mut open_since: Option<Timestamp> = None;
        while at <= to {
            let open = at < to && window.is_open(at);
            match (open, open_since) {
                (true, None) => open_since = Some(at),
                (false, Some(since)) => {
                    let minutes = since.duration_until(at).as_secs() / 60;
                    actual += &format!("{} .. {}  {minutes} min\n", show(&window, since), show(&window, at));
                    open_since = None;
                }
                _ => {}
            }
            at += SignedDuration::from_mins(1);
        }
        expect.assert_eq(&actual);
    }

    /// Shows `next_open` for each instant, and asserts that the answer is open, that the window
    /// was closed just before it, and that no whole minute between `at` and it was open.
    fn check_next(spec: &str, instants: &[&str], expect: Expect) {
        let window = Window::parse(spec).unwrap();
        let mut actual = String::new();
        for s in instants {
            let at = ts(s);
            let line = match window.next_open(at) {
                None => format!("{} -> never\n", show(&window, at)),
                Some(next) => {
                    assert_next_open_is_first(&window, at, next);
                    format!("{} -> {}\n", show(&window, at), show(&window, next))
                }
            };
            actual += &line;
        }
        expect.assert_eq(&actual);
    }

    fn assert_next_open_is_first(window: &Window, at: Timestamp, next: Timestamp) {
        assert!(next >= at, "{window}: next_open went back in time");
        assert!(window.is_open(next), "{window}: next_open({at}) = {next} is closed");
        if next > at {
            let just_before = next.checked_sub(SignedDuration::from_nanos(1)).unwrap();
            assert!(!window.is_open(just_before), "{window}: open before {next}");
            let mut probe = at;
            while probe < next {
                assert!(!window.is_open(probe), "{window}: {probe} is open before {next}");
                probe += SignedDuration::from_mins(1);
            }
        }
    }

    #[test]
    fn parse_good_forms() {
        check_parse("Mon-Fri 01:00-05:00 Europe/Berlin", expect![[r#"Mon-Fri 01:00-05:00 Europe/Berlin"#]]);
        check_parse("Sat,Sun 22:00-04:00 UTC", expect![[r#"Sat,Sun 22:00-04:00 UTC"#]]);
        check_parse("daily 01:00-05:00 America/New_York", expect![[r#"daily 01:00-05:00 America/New_York"#]]);
        check_parse("Mon,Wed-Fri 23:30-00:30", expect![[r#"Mon,Wed-Fri 23:30-00:30 UTC"#]]);
        check_parse("* 00:00-24:00", expect![[r#"daily 00:00-24:00 UTC"#]]);
        check_parse("  mon-FRI   01:00-05:00  europe/berlin ", expect![[r#"Mon-Fri 01:00-05:00 Europe/Berlin"#]]);
        check_parse("Tue 01:00-05:00 utc", expect![[r#"Tue 01:00-05:00 UTC"#]]);
        check_parse("DAILY 01:00-05:00", expect![[r#"daily 01:00-05:00 UTC"#]]);
    }

    #[test]
    fn parse_canonical_days() {
        check_parse("Fri-Mon 22:00-04:00", expect![[r#"Fri-Mon 22:00-04:00 UTC"#]]);
        check_parse("Sun,Mon 22:00-04:00", expect![[r#"Sun,Mon 22:00-04:00 UTC"#]]);
        check_parse("Mon,Tue,Wed 01:00-02:00", expect![[r#"Mon-Wed 01:00-02:00 UTC"#]]);
        check_parse("Mon-Sun 01:00-02:00", expect![[r#"daily 01:00-02:00 UTC"#]]);
        check_parse("Tue-Mon 01:00-02:00", expect![[r#"daily 01:00-02:00 UTC"#]]);
        check_parse("Sun,Sat,Mon,Wed 01:00-02:00", expect![[r#"Wed,Sat-Mon 01:00-02:00 UTC"#]]);
        check_parse("Mon-Fri,Wed 01:00-02:00", expect![[r#"Mon-Fri 01:00-02:00 UTC"#]]);
        check_parse("Sun 01:00-02:00", expect![[r#"Sun 01:00-02:00 UTC"#]]);
        check_parse("Mon,Wed,Fri,Sun 01:00-02:00", expect![[r#"Wed,Fri,Sun,Mon 01:00-02:00 UTC"#]]);
    }

    #[test]
    fn parse_canonical_times() {
        // A midnight end is written 24:00 either way, so both spellings are one window.
        check_parse("Fri 22:00-00:00", expect![[r#"Fri 22:00-24:00 UTC"#]]);
        check_parse("Fri 22:00-24:00", expect![[r#"Fri 22:00-24:00 UTC"#]]);
        check_parse("Fri 00:00-24:00", expect![[r#"Fri 00:00-24:00 UTC"#]]);
        check_parse("Fri 23:59-00:01", expect![[r#"Fri 23:59-00:01 UTC"#]]);
        check_parse("Fri 00:00-00:01", expect![[r#"Fri 00:00-00:01 UTC"#]]);
    }

    #[test]
    fn parse_errors() {
        check_parse(
            "",
            expect![[
                r#"error: empty window spec: expected `DAYS HH:MM-HH:MM [TIME_ZONE]`, e.g. `Mon-Fri 01:00-05:00 Europe/Berlin`"#
            ]],
        );
        check_parse(
            "   ",
            expect![[
                r#"error: empty window spec: expected `DAYS HH:MM-HH:MM [TIME_ZONE]`, e.g. `Mon-Fri 01:00-05:00 Europe/Berlin`"#
            ]],
        );
        check_parse(
            "Mon-Fri",
            expect![[
                r#"error: window spec `Mon-Fri` has no time range: expected `DAYS HH:MM-HH:MM [TIME_ZONE]`, e.g. `Mon-Fri 01:00-05:00 Europe/Berlin`"#
            ]],
        );
        check_parse(
            "Mon 01:00-05:00 UTC please now",
            expect![[
                r#"error: unexpected `please now` after the time zone in `Mon 01:00-05:00 UTC please now`: expected `DAYS HH:MM-HH:MM [TIME_ZONE]`, e.g. `Mon-Fri 01:00-05:00 Europe/Berlin`"#
            ]],
        );
        check_parse(
            "Mox 01:00-05:00",
            expect![[r#"error: unknown day `Mox`: expected Mon, Tue, Wed, Thu, Fri, Sat, Sun"#]],
        );
        check_parse(
            "Monday 01:00-05:00",
            expect![[r#"error: unknown day `Monday`: expected Mon, Tue, Wed, Thu, Fri, Sat, Sun"#]],
        );
        check_parse(
            "Mon-Frx 01:00-05:00",
            expect![[r#"error: unknown day `Frx`: expected Mon, Tue, Wed, Thu, Fri, Sat, Sun"#]],
        );
        check_parse(
            "Mon,,Tue 01:00-05:00",
            expect![[
                r#"error: empty day in `Mon,,Tue`: expected days separated by single commas, e.g. `Mon,Wed-Fri`"#
            ]],
        );
        check_parse(
            "Mon, 01:00-05:00",
            expect![[r#"error: empty day in `Mon,`: expected days separated by single commas, e.g. `Mon,Wed-Fri`"#]],
        );
        check_parse(
            "Mon- 01:00-05:00",
            expect![[r#"error: invalid day range `Mon-`: expected two days joined by `-`, e.g. `Mon-Fri`"#]],
        );
        check_parse(
            "Mon-Tue-Wed 01:00-05:00",
            expect![[r#"error: invalid day range `Mon-Tue-Wed`: expected two days joined by `-`, e.g. `Mon-Fri`"#]],
        );
        check_parse(
            "mon-Mon 01:00-05:00",
            expect![[
                r#"error: day range `mon-Mon` starts and ends on the same day: write `Mon` for one day or `daily` for every day"#
            ]],
        );
        check_parse(
            "Mon 01:00",
            expect![[r#"error: invalid time range `01:00`: expected HH:MM-HH:MM, e.g. `01:00-05:00`"#]],
        );
        check_parse(
            "Mon 01:00-",
            expect![[r#"error: invalid time range `01:00-`: expected HH:MM-HH:MM, e.g. `01:00-05:00`"#]],
        );
        check_parse(
            "Mon 1:00-05:00",
            expect![[r#"error: invalid time `1:00`: expected HH:MM from 00:00 to 23:59, or 24:00 as an end"#]],
        );
        check_parse(
            "Mon 01:00-25:00",
            expect![[r#"error: invalid time `25:00`: expected HH:MM from 00:00 to 23:59, or 24:00 as an end"#]],
        );
        check_parse(
            "Mon 01:60-05:00",
            expect![[r#"error: invalid time `01:60`: expected HH:MM from 00:00 to 23:59, or 24:00 as an end"#]],
        );
        check_parse(
            "Mon 01:00-24:01",
            expect![[r#"error: invalid time `24:01`: expected HH:MM from 00:00 to 23:59, or 24:00 as an end"#]],
        );
        check_parse(
            "Mon 01:00-05:00-06:00",
            expect![[r#"error: invalid time `05:00-06:00`: expected HH:MM from 00:00 to 23:59, or 24:00 as an end"#]],
        );
        check_parse(
            "Mon 0x:00-05:00",
            expect![[r#"error: invalid time `0x:00`: expected HH:MM from 00:00 to 23:59, or 24:00 as an end"#]],
        );
        check_parse(
            "Mon 24:00-05:00",
            expect![[
                r#"error: window `24:00-05:00` starts at 24:00: expected a start from 00:00 to 23:59; write 00:00 on the following day"#
            ]],
        );
        check_parse(
            "Mon 01:00-01:00",
            expect![[
                r#"error: empty window `01:00-01:00`: start and end are the same time; expected different times, or 00:00-24:00 for a whole day"#
            ]],
        );
        check_parse(
            "Mon 00:00-00:00",
            expect![[
                r#"error: empty window `00:00-00:00`: start and end are the same time; expected different times, or 00:00-24:00 for a whole day"#
            ]],
        );
        check_parse(
            "utc 01:00-05:00",
            expect![[r#"error: unknown day `utc`: expected Mon, Tue, Wed, Thu, Fri, Sat, Sun"#]],
        );
        check_parse(
            "Mon 01:00-05:00 Europe/Berln",
            expect![[
                r#"error: unknown time zone `Europe/Berln`: expected an IANA name such as `Europe/Berlin` or `UTC`"#
            ]],
        );
    }

    #[test]
    fn equality_is_by_canonical_spec() {
        let a = Window::parse("mon-fri 01:00-05:00 europe/berlin").unwrap();
        let b = Window::parse("Mon,Tue,Wed,Thu,Fri 01:00-05:00 Europe/Berlin").unwrap();
        assert_eq!(a, b);
        assert_ne!(a, Window::parse("Mon-Fri 01:00-05:00 Europe/Paris").unwrap());
        expect![[r#"Window("Mon-Fri 01:00-05:00 Europe/Berlin")"#]].assert_eq(&format!("{a:?}"));
    }

    #[test]
    fn open_boundaries_start_inclusive_end_exclusive() {
        check_open(
            "Mon-Fri 01:00-05:00 UTC",
            &[
                "2025-06-02T00:59:59.999999999Z",
                "2025-06-02T01:00:00Z",
                "2025-06-02T03:00:00Z",
                "2025-06-02T04:59:59.999999999Z",
                "2025-06-02T05:00:00Z",
                "2025-06-07T01:00:00Z",
                "2025-06-08T03:00:00Z",
            ],
            expect![[r#"
                Mon 2025-06-02 00:59:59.999999999+00:00  closed
                Mon 2025-06-02 01:00:00+00:00  open
                Mon 2025-06-02 03:00:00+00:00  open
                Mon 2025-06-02 04:59:59.999999999+00:00  open
                Mon 2025-06-02 05:00:00+00:00  closed
                Sat 2025-06-07 01:00:00+00:00  closed
                Sun 2025-06-08 03:00:00+00:00  closed
            "#]],
        );
        check_open(
            "Mon 22:00-24:00 UTC",
            &["2025-06-02T21:59:59Z", "2025-06-02T22:00:00Z", "2025-06-02T23:59:59Z", "2025-06-03T00:00:00Z"],
            expect![[r#"
                Mon 2025-06-02 21:59:59+00:00  closed
                Mon 2025-06-02 22:00:00+00:00  open
                Mon 2025-06-02 23:59:59+00:00  open
                Tue 2025-06-03 00:00:00+00:00  closed
            "#]],
        );
    }

    #[test]
    fn open_across_midnight_belongs_to_start_day() {
        // Friday's window runs into Saturday morning; Friday's own early morning is closed
        // because Thursday has no window.
        check_spans(
            "Fri 22:00-04:00 UTC",
            "2025-06-05T00:00:00Z",
            "2025-06-09T00:00:00Z",
            expect![[r#"
                Fri 2025-06-06 22:00:00+00:00 .. Sat 2025-06-07 04:00:00+00:00  360 min
            "#]],
        );
        check_open(
            "Fri 22:00-04:00 UTC",
            &[
                "2025-06-06T01:00:00Z",
                "2025-06-06T22:00:00Z",
                "2025-06-07T03:59:59Z",
                "2025-06-07T04:00:00Z",
                "2025-06-07T23:00:00Z",
            ],
            expect![[r#"
                Fri 2025-06-06 01:00:00+00:00  closed
                Fri 2025-06-06 22:00:00+00:00  open
                Sat 2025-06-07 03:59:59+00:00  open
                Sat 2025-06-07 04:00:00+00:00  closed
                Sat 2025-06-07 23:00:00+00:00  closed
            "#]],
        );
    }

    #[test]
    fn open_across_midnight_wraps_the_week() {
        check_open(
            "Sun 23:00-01:00 UTC",
            &[
                "2025-06-08T22:59:00Z",
                "2025-06-08T23:30:00Z",
                "2025-06-09T00:30:00Z",
                "2025-06-09T01:00:00Z",
                "2025-06-02T00:30:00Z",
            ],
            expect![[r#"
                Sun 2025-06-08 22:59:00+00:00  closed
                Sun 2025-06-08 23:30:00+00:00  open
                Mon 2025-06-09 00:30:00+00:00  open
                Mon 2025-06-09 01:00:00+00:00  closed
                Mon 2025-06-02 00:30:00+00:00  open
            "#]],
        );
        check_spans(
            "Sat,Sun 22:00-04:00 UTC",
            "2025-06-06T00:00:00Z",
            "2025-06-10T00:00:00Z",
            expect![[r#"
                Sat 2025-06-07 22:00:00+00:00 .. Sun 2025-06-08 04:00:00+00:00  360 min
                Sun 2025-06-08 22:00:00+00:00 .. Mon 2025-06-09 04:00:00+00:00  360 min
            "#]],
        );
        // Consecutive days whose windows touch at midnight merge into one span.
        check_spans(
            "Fri-Mon 00:00-24:00 UTC",
            "2025-06-04T00:00:00Z",
            "2025-06-11T00:00:00Z",
            expect![[r#"
                Fri 2025-06-06 00:00:00+00:00 .. Tue 2025-06-10 00:00:00+00:00  5760 min
            "#]],
        );
    }

    #[test]
    fn open_is_judged_in_the_window_zone() {
        // 00:30 UTC on a Monday is 02:30 Monday in Berlin but 20:30 Sunday in New York.
        check_open(
            "Mon 01:00-05:00 Europe/Berlin",
            &["2025-06-02T00:30:00Z"],
            expect![[r#"
            Mon 2025-06-02 02:30:00+02:00  open
        "#]],
        );
        check_open(
            "Mon 01:00-05:00 America/New_York",
            &["2025-06-02T00:30:00Z"],
            expect![[r#"
            Sun 2025-06-01 20:30:00-04:00  closed
        "#]],
        );
        check_open(
            "Mon 01:00-05:00 UTC",
            &["2025-06-02T00:30:00Z"],
            expect![[r#"
            Mon 2025-06-02 00:30:00+00:00  closed
        "#]],
        );
    }

    #[test]
    fn dst_spring_forward_berlin() {
        // 2025-03-30: 02:00 CET jumps to 03:00 CEST, so 01:00-05:00 lasts 3 real hours.
        check_spans(
            "Sun 01:00-05:00 Europe/Berlin",
            "2025-03-29T00:00:00Z",
            "2025-03-31T00:00:00Z",
            expect![[r#"
                Sun 2025-03-30 01:00:00+01:00 .. Sun 2025-03-30 05:00:00+02:00  180 min
            "#]],
        );
        // 02:00-02:30 is wholly inside the skipped hour: that day the window does not exist.
        check_spans(
            "daily 02:00-02:30 Europe/Berlin",
            "2025-03-29T00:00:00Z",
            "2025-04-01T00:00:00Z",
            expect![[r#"
                Sat 2025-03-29 02:00:00+01:00 .. Sat 2025-03-29 02:30:00+01:00  30 min
                Mon 2025-03-31 02:00:00+02:00 .. Mon 2025-03-31 02:30:00+02:00  30 min
            "#]],
        );
        // 02:30-04:00 opens when the wall clock first reads a time inside it: 03:00 CEST.
        check_spans(
            "Sun 02:30-04:00 Europe/Berlin",
            "2025-03-29T00:00:00Z",
            "2025-03-31T00:00:00Z",
            expect![[r#"
                Sun 2025-03-30 03:00:00+02:00 .. Sun 2025-03-30 04:00:00+02:00  60 min
            "#]],
        );
        check_open(
            "Sun 01:00-05:00 Europe/Berlin",
            &[
                "2025-03-30T01:59:59+01:00",
                "2025-03-30T03:00:00+02:00",
                "2025-03-30T04:59:59+02:00",
                "2025-03-30T05:00:00+02:00",
            ],
            expect![[r#"
                Sun 2025-03-30 01:59:59+01:00  open
                Sun 2025-03-30 03:00:00+02:00  open
                Sun 2025-03-30 04:59:59+02:00  open
                Sun 2025-03-30 05:00:00+02:00  closed
            "#]],
        );
    }

    #[test]
    fn dst_fall_back_berlin() {
        // 2025-10-26: 03:00 CEST falls back to 02:00 CET, so 01:00-05:00 lasts 5 real hours.
        check_spans(
            "Sun 01:00-05:00 Europe/Berlin",
            "2025-10-25T00:00:00Z",
            "2025-10-27T00:00:00Z",
            expect![[r#"
                Sun 2025-10-26 01:00:00+02:00 .. Sun 2025-10-26 05:00:00+01:00  300 min
            "#]],
        );
        // The wall clock shows 02:00-02:30 twice, and the window is open both times.
        check_spans(
            "Sun 02:00-02:30 Europe/Berlin",
            "2025-10-25T00:00:00Z",
            "2025-10-27T00:00:00Z",
            expect![[r#"
                Sun 2025-10-26 02:00:00+02:00 .. Sun 2025-10-26 02:30:00+02:00  30 min
                Sun 2025-10-26 02:00:00+01:00 .. Sun 2025-10-26 02:30:00+01:00  30 min
            "#]],
        );
        // A window ending inside the repeated hour closes at the first 02:30 and, because the
        // wall clock then turns back to 02:00, reopens for the repeat: civil time decides.
        check_spans(
            "Sat 23:00-02:30 Europe/Berlin",
            "2025-10-25T00:00:00Z",
            "2025-10-27T00:00:00Z",
            expect![[r#"
                Sat 2025-10-25 23:00:00+02:00 .. Sun 2025-10-26 02:30:00+02:00  210 min
                Sun 2025-10-26 02:00:00+01:00 .. Sun 2025-10-26 02:30:00+01:00  30 min
            "#]],
        );
    }

    #[test]
    fn dst_new_york() {
        // 2025-03-09: 02:00 EST jumps to 03:00 EDT.
        check_spans(
            "Sun 01:00-05:00 America/New_York",
            "2025-03-08T00:00:00Z",
            "2025-03-10T12:00:00Z",
            expect![[r#"
                Sun 2025-03-09 01:00:00-05:00 .. Sun 2025-03-09 05:00:00-04:00  180 min
            "#]],
        );
        // 2025-11-02: 02:00 EDT falls back to 01:00 EST, so 01:00-01:30 happens twice.
        check_spans(
            "Sun 01:00-05:00 America/New_York",
            "2025-11-01T00:00:00Z",
            "2025-11-03T12:00:00Z",
            expect![[r#"
                Sun 2025-11-02 01:00:00-04:00 .. Sun 2025-11-02 05:00:00-05:00  300 min
            "#]],
        );
        check_spans(
            "daily 01:00-01:30 America/New_York",
            "2025-11-01T12:00:00Z",
            "2025-11-03T12:00:00Z",
            expect![[r#"
                Sun 2025-11-02 01:00:00-04:00 .. Sun 2025-11-02 01:30:00-04:00  30 min
                Sun 2025-11-02 01:00:00-05:00 .. Sun 2025-11-02 01:30:00-05:00  30 min
                Mon 2025-11-03 01:00:00-05:00 .. Mon 2025-11-03 01:30:00-05:00  30 min
            "#]],
        );
    }

    #[test]
    fn next_open_plain() {
        check_next(
            "Mon-Fri 01:00-05:00 UTC",
            &[
                // Inside: the instant itself.
                "2025-06-02T03:17:42.5Z",
                // At the start: the instant itself.
                "2025-06-02T01:00:00Z",
                // Before, same day.
                "2025-06-02T00:59:59.999999999Z",
                // At the end: closed, so the next day.
                "2025-06-02T05:00:00Z",
                // After Friday's window: across the weekend to Monday.
                "2025-06-06T05:00:00Z",
                "2025-06-07T12:00:00Z",
                "2025-06-08T23:59:59Z",
            ],
            expect![[r#"
                Mon 2025-06-02 03:17:42.5+00:00 -> Mon 2025-06-02 03:17:42.5+00:00
                Mon 2025-06-02 01:00:00+00:00 -> Mon 2025-06-02 01:00:00+00:00
                Mon 2025-06-02 00:59:59.999999999+00:00 -> Mon 2025-06-02 01:00:00+00:00
                Mon 2025-06-02 05:00:00+00:00 -> Tue 2025-06-03 01:00:00+00:00
                Fri 2025-06-06 05:00:00+00:00 -> Mon 2025-06-09 01:00:00+00:00
                Sat 2025-06-07 12:00:00+00:00 -> Mon 2025-06-09 01:00:00+00:00
                Sun 2025-06-08 23:59:59+00:00 -> Mon 2025-06-09 01:00:00+00:00
            "#]],
        );
    }

    #[test]
    fn next_open_across_midnight() {
        check_next(
            "Sun 23:00-01:00 Europe/Berlin",
            &[
                // Monday morning is still Sunday's window.
                "2025-06-09T00:30:00+02:00",
                // Sunday early morning is not (Saturday has no window): wait until 23:00.
                "2025-06-08T00:30:00+02:00",
                "2025-06-09T01:00:00+02:00",
            ],
            expect![[r#"
                Mon 2025-06-09 00:30:00+02:00 -> Mon 2025-06-09 00:30:00+02:00
                Sun 2025-06-08 00:30:00+02:00 -> Sun 2025-06-08 23:00:00+02:00
                Mon 2025-06-09 01:00:00+02:00 -> Sun 2025-06-15 23:00:00+02:00
            "#]],
        );
    }

    #[test]
    fn next_open_across_dst() {
        // Saturday noon before spring-forward: Sunday 01:00 CET, before the change.
        check_next(
            "daily 01:00-05:00 Europe/Berlin",
            &["2025-03-29T12:00:00+01:00"],
            expect![[r#"
            Sat 2025-03-29 12:00:00+01:00 -> Sun 2025-03-30 01:00:00+01:00
        "#]],
        );
        // 02:30 does not exist on the spring-forward day; the window opens at 03:00 CEST.
        check_next(
            "daily 02:30-04:00 Europe/Berlin",
            &["2025-03-30T00:00:00+01:00", "2025-03-29T04:00:00+01:00"],
            expect![[r#"
                Sun 2025-03-30 00:00:00+01:00 -> Sun 2025-03-30 03:00:00+02:00
                Sat 2025-03-29 04:00:00+01:00 -> Sun 2025-03-30 03:00:00+02:00
            "#]],
        );
        // 02:00-02:30 does not exist that day, so the next opening is Monday.
        check_next(
            "daily 02:00-02:30 Europe/Berlin",
            &["2025-03-30T00:00:00+01:00"],
            expect![[r#"
            Sun 2025-03-30 00:00:00+01:00 -> Mon 2025-03-31 02:00:00+02:00
        "#]],
        );
        // A weekly window lost to the gap waits a whole extra week.
        check_next(
            "Sun 02:15-02:45 America/New_York",
            &["2025-03-08T12:00:00-05:00"],
            expect![[r#"
            Sat 2025-03-08 12:00:00-05:00 -> Sun 2025-03-16 02:15:00-04:00
        "#]],
        );
        // On fall-back day the window reopens when the clock turns back into it.
        check_next(
            "daily 02:00-02:30 Europe/Berlin",
            &["2025-10-26T02:45:00+02:00", "2025-10-26T02:30:00+01:00"],
            expect![[r#"
                Sun 2025-10-26 02:45:00+02:00 -> Sun 2025-10-26 02:00:00+01:00
                Sun 2025-10-26 02:30:00+01:00 -> Mon 2025-10-27 02:00:00+01:00
            "#]],
        );
        check_next(
            "daily 02:15-02:45 Europe/Berlin",
            &["2025-10-26T02:50:00+02:00"],
            expect![[r#"
                Sun 2025-10-26 02:50:00+02:00 -> Sun 2025-10-26 02:15:00+01:00
            "#]],
        );
        check_next(
            "Sun 01:30-02:30 Europe/Berlin",
            &["2025-10-26T02:40:00+02:00"],
            expect![[r#"
                Sun 2025-10-26 02:40:00+02:00 -> Sun 2025-10-26 02:00:00+01:00
            "#]],
        );
    }

    /// Compares `next_open` with a brute-force minute scan over `is_open` for many windows and
    /// starting minutes around DST changes. Openings fall on whole minutes in these zones, so
    /// for a minute-aligned `at` the first open whole minute is the exact answer.
    #[test]
    fn next_open_agrees_with_minute_scan() {
        let zones_and_changes = [
            ("Europe/Berlin", "2025-03-30T01:00:00Z"),
            ("Europe/Berlin", "2025-10-26T01:00:00Z"),
            ("America/New_York", "2025-03-09T07:00:00Z"),
            ("America/New_York", "2025-11-02T06:00:00Z"),
        ];
        let windows = [
            "daily 02:00-02:30",
            "daily 02:30-04:00",
            "Sun 01:00-05:00",
            "Sat 23:00-02:30",
            "Sun 02:15-02:45",
            "Sun 01:30-01:45",
            "Fri-Mon 22:00-00:00",
            "Mon,Wed 00:00-24:00",
        ];
        let step = SignedDuration::from_mins(1);
        let mut checked = 0;
        for (zone, change) in zones_and_changes {
            let change = ts(change);
            let from = change - SignedDuration::from_hours(4 * 24);
            let to = change + SignedDuration::from_hours(4 * 24);
            for days_and_times in windows {
                let window = Window::parse(&format!("{days_and_times} {zone}")).unwrap();
                // Minute flags up to the search horizon past `to`, then the next open minute
                // for every minute, filled in backwards.
                let end = to + SignedDuration::from_hours(24 * i64::from(SEARCH_HORIZON_DAYS));
                let mut minutes = Vec::new();
                let mut at = from;
                while at < end {
                    minutes.push((at, window.is_open(at)));
                    at += step;
                }
                let mut next: Vec<Option<Timestamp>> = vec![None; minutes.len()];
                let mut upcoming = None;
                for (i, &(at, open)) in minutes.iter().enumerate().rev() {
                    if open {
                        upcoming = Some(at);
                    }
                    next[i] = upcoming;
                }
                for (i, &(at, _)) in minutes.iter().enumerate().step_by(7) {
                    if at >= to {
                        break;
                    }
                    assert_eq!(window.next_open(at), next[i], "{window} from {at}");
                    checked += 1;
                }
            }
        }
        assert!(checked > 10_000, "the scan checked only {checked} instants");
    }
}
