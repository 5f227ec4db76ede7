//! The Patch Tuesday calendar: when each campaign month starts and which advisories it collects.
//!
//! A month starts on Patch Tuesday (the second Tuesday of the calendar month) plus the
//! campaign's offset in days, at the campaign's local start time. The offset is counted in
//! calendar days, so it may cross a month or year end (`-10` days in January lands in the
//! previous December) and the start time stays the same wall-clock time across daylight saving
//! changes.
//!
//! **Daylight saving:** a start time that does not exist that day (inside a spring-forward gap)
//! or exists twice (inside a fall-back overlap) is resolved with jiff's *compatible*
//! disambiguation, the rule of RFC 5545 and of most calendars: in a gap the clock time is moved
//! forward by the gap's length (02:30 on Berlin's spring-forward day becomes 03:30 CEST), in an
//! overlap the earlier instant wins (02:30 CEST, not 02:30 CET). So a month always starts at
//! exactly one instant, never skipped and never twice.
//!
//! A month collects the advisories published from the previous month's start (inclusive) to
//! its own start (exclusive), so consecutive months neither overlap nor leave a gap; the
//! campaign's first month instead reaches back its lookback days.

use std::fmt;
use std::str::FromStr;

use jiff::civil::{Date, Time, Weekday};
use jiff::tz::TimeZone;
use jiff::{Timestamp, ToSpan};

use super::spec::ValidCampaign;

/// Earliest year a campaign month may be in.
pub const MIN_YEAR: i16 = 1970;
/// Latest year a campaign month may be in (jiff's last year).
pub const MAX_YEAR: i16 = 9999;

/// A calendar month that a campaign month instance belongs to, e.g. `2025-03`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct YearMonth {
    year: i16,
    month: i8,
}

/// Why a calendar question could not be answered.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    /// A year and month outside `1970-01..=9999-12`, or text not of the form `YYYY-MM`.
    #[error("`{text}` is not a campaign month: expected YYYY-MM from {MIN_YEAR}-01 to {MAX_YEAR}-12, e.g. `2025-03`")]
    BadMonth {
        /// The month as given.
        text: String,
    },
    /// The answer lies beyond the last instant jiff can represent (only near the year 9999).
    #[error("the schedule of campaign month {month} lies outside the supported time range")]
    OutOfRange {
        /// The month asked about.
        month: YearMonth,
    },
    /// The month is earlier than the campaign's first month, so it collects nothing.
    #[error("campaign month {month} is before the campaign's first month {first}")]
    BeforeFirstMonth {
        /// The month asked about.
        month: YearMonth,
        /// The campaign's first month.
        first: YearMonth,
    },
}

impl YearMonth {
    /// A month; refused outside `1970-01..=9999-12`.
    pub fn new(year: i16, month: i8) -> Result<YearMonth, ScheduleError> {
        if (MIN_YEAR..=MAX_YEAR).contains(&year) && (1..=12).contains(&month) {
            Ok(YearMonth { year, month })
        } else {
            Err(ScheduleError::BadMonth { text: format!("{year}-{month:02}") })
        }
    }

    /// The month that holds `date`.
    pub fn of(date: Date) -> Result<YearMonth, ScheduleError> {
        YearMonth::new(date.year(), date.month())
    }

    /// The year.
    pub fn year(self) -> i16 {
        self.year
    }

    /// The month of the year, 1 to 12.
    pub fn month(self) -> i8 {
        self.month
    }

    /// The following month; an error only after `9999-12`.
    pub fn next(self) -> Result<YearMonth, ScheduleError> {
        match self.month {
            12 => YearMonth::new(self.year.saturating_add(1), 1),
            m => YearMonth::new(self.year, m + 1),
        }
    }

    /// The preceding month; an error only before `1970-01`.
    pub fn previous(self) -> Result<YearMonth, ScheduleError> {
        match self.month {
            1 => YearMonth::new(self.year.saturating_sub(1), 12),
            m => YearMonth::new(self.year, m - 1),
        }
    }

    /// The month's first day.
    fn first_day(self) -> Date {
        // Cannot panic: `new` checked the year against jiff's range and the month to be 1..=12.
        jiff::civil::date(self.year, self.month, 1)
    }
}

impl fmt::Display for YearMonth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}-{:02}", self.year, self.month)
    }
}

impl FromStr for YearMonth {
    type Err = ScheduleError;

    /// Parses `YYYY-MM` exactly (four digits, dash, two digits), as `campaigns month` takes it.
    fn from_str(text: &str) -> Result<YearMonth, ScheduleError> {
        let bad = || ScheduleError::BadMonth { text: text.to_owned() };
        let (year, month) = text.split_once('-').ok_or_else(bad)?;
        let digits = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_digit());
        if !digits(year, 4) || !digits(month, 2) {
            return Err(bad());
        }
        YearMonth::new(year.parse().map_err(|_| bad())?, month.parse().map_err(|_| bad())?).map_err(|_| bad())
    }
}

/// The month after `month`: the month instance a campaign creates when `month` completes.
pub fn next_month(month: YearMonth) -> Result<YearMonth, ScheduleError> {
    month.next()
}

/// Patch Tuesday of `month`: its second Tuesday, always the 8th to the 14th.
pub fn patch_tuesday(month: YearMonth) -> Date {
    let first = month.first_day();
    let days_to_tuesday =
        (Weekday::Tuesday.to_monday_zero_offset() - first.weekday().to_monday_zero_offset()).rem_euclid(7);
    // Cannot panic: the day is 8 + 0..=6, which every month has.
    jiff::civil::date(month.year, month.month, 8 + days_to_tuesday)
}

/// The instant at which `campaign`'s instance for `month` starts: Patch Tuesday plus the offset
/// days, at the start time in the campaign's zone, daylight saving resolved as the module
/// describes.
pub fn month_start(campaign: &ValidCampaign, month: YearMonth) -> Result<Timestamp, ScheduleError> {
    start_at(campaign.time_zone(), campaign.patch_tuesday_offset_days(), campaign.start_time(), month)
}

/// [`month_start`] from its three parts, so they can be tested without a campaign file.
fn start_at(zone: &TimeZone, offset_days: i64, time: Time, month: YearMonth) -> Result<Timestamp, ScheduleError> {
    let out_of_range = |_| ScheduleError::OutOfRange { month };
    let date = patch_tuesday(month).checked_add(offset_days.days()).map_err(out_of_range)?;
    // `compatible`: a time in a gap moves forward by the gap, a time in an overlap takes the
    // earlier instant.
    zone.to_ambiguous_timestamp(date.to_datetime(time)).compatible().map_err(out_of_range)
}

/// The publication times whose advisories a month collects: `from <= published < to`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AdvisoryWindow {
    /// First instant included.
    pub from: Timestamp,
    /// First instant excluded: the month's own start.
    pub to: Timestamp,
}

impl AdvisoryWindow {
    /// True when an advisory published at `published` belongs to the month.
    pub fn contains(&self, published: Timestamp) -> bool {
        self.from <= published && published < self.to
    }
}

/// The advisory window of `campaign`'s instance for `month`, given the campaign's first month.
///
/// For the first month the window reaches back `first_month_lookback_days` calendar days in the
/// campaign's zone from its start (same wall-clock time, daylight saving resolved as above);
/// for later months it begins where the previous month's window ended. A month before the
/// first one is an error.
pub fn advisory_window(
    campaign: &ValidCampaign,
    month: YearMonth,
    first_month: YearMonth,
) -> Result<AdvisoryWindow, ScheduleError> {
    if month < first_month {
        return Err(ScheduleError::BeforeFirstMonth { month, first: first_month });
    }
    let to = month_start(campaign, month)?;
    let from = if month == first_month {
        let lookback = i64::from(campaign.first_month_lookback_days()).days();
        to.to_zoned(campaign.time_zone().clone())
            .checked_sub(lookback)
            .map_err(|_| ScheduleError::OutOfRange { month })?
            .timestamp()
    } else {
        month_start(campaign, month.previous()?)?
    };
    Ok(AdvisoryWindow { from, to })
}

/// The first month of a campaign created (or first applied) at `created_at`: the earliest month
/// whose start is at or after `created_at`. A month whose start already passed is never
/// created, because its first step would start late and its window would be history.
pub fn first_month(campaign: &ValidCampaign, created_at: Timestamp) -> Result<YearMonth, ScheduleError> {
    let local = campaign.time_zone().to_datetime(created_at).date();
    let here = YearMonth::of(local)?;
    // Starts lie within 27 days of Patch Tuesday (the 8th to 14th), so the start of the month
    // two after `here` is always later than any instant in `here`; the answer is among these.
    let mut candidate = here.previous().unwrap_or(here);
    for _ in 0..4 {
        if month_start(campaign, candidate)? >= created_at {
            return Ok(candidate);
        }
        candidate = candidate.next()?;
    }
    Err(ScheduleError::OutOfRange { month: here })
}

#[cfg(test)]
mod tests;
