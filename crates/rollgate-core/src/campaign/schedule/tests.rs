//! Tests of the Patch Tuesday calendar across months, years, time zones and daylight saving.

use expect_test::expect;
use jiff::civil::Weekday;

use super::*;
use crate::campaign::spec::CampaignSpec;

fn ym(text: &str) -> YearMonth {
    text.parse().unwrap()
}

fn ts(text: &str) -> Timestamp {
    text.parse().unwrap()
}

/// A one-step campaign with the given start rule, validated.
fn campaign(zone: &str, offset_days: i64, start_time: &str, lookback_days: u32) -> ValidCampaign {
    let text = format!(
        r#"
        name = "c"
        time_zone = "{zone}"
        patch_tuesday_offset_days = {offset_days}
        start_time = "{start_time}"
        first_month_lookback_days = {lookback_days}
        [[steps]]
        name = "all"
        targets = "all"
        max_in_flight = 10
        soak = "1h"
        progression = "auto"
        acceptance = {{ min_sample = 1, min_success_rate = 0.9 }}
        "#
    );
    toml::from_str::<CampaignSpec>(&text).unwrap().validate().unwrap()
}

#[test]
fn patch_tuesdays_2024_to_2027() {
    let mut out = String::new();
    for year in 2024..=2027 {
        let days: Vec<String> =
            (1..=12).map(|m| patch_tuesday(YearMonth::new(year, m).unwrap()).strftime("%m-%d").to_string()).collect();
        out.push_str(&format!("{year}: {}\n", days.join(" ")));
    }
    expect![[r#"
        2024: 01-09 02-13 03-12 04-09 05-14 06-11 07-09 08-13 09-10 10-08 11-12 12-10
        2025: 01-14 02-11 03-11 04-08 05-13 06-10 07-08 08-12 09-09 10-14 11-11 12-09
        2026: 01-13 02-10 03-10 04-14 05-12 06-09 07-14 08-11 09-08 10-13 11-10 12-08
        2027: 01-12 02-09 03-09 04-13 05-11 06-08 07-13 08-10 09-14 10-12 11-09 12-14
    "#]]
    .assert_eq(&out);
    // Published Microsoft release dates, independent of the table above.
    for (month, day) in
        [("2024-01", "2024-01-09"), ("2024-10", "2024-10-08"), ("2025-02", "2025-02-11"), ("2026-11", "2026-11-10")]
    {
        assert_eq!(patch_tuesday(ym(month)).to_string(), day);
    }
}

/// Counts Tuesdays day by day, a method that shares nothing with the arithmetic under test.
#[test]
fn patch_tuesday_is_the_second_tuesday_in_every_month_of_two_centuries() {
    for year in 1970..=2170 {
        for month in 1..=12 {
            let first = jiff::civil::date(year, month, 1);
            let second = (0..14)
                .map(|i| first.checked_add(i.days()).unwrap())
                .filter(|d| d.weekday() == Weekday::Tuesday)
                .nth(1)
                .unwrap();
            assert_eq!(patch_tuesday(YearMonth::new(year, month).unwrap()), second, "{year}-{month}");
        }
    }
}

/// Prints the start of `month` as local time with its zone, and in UTC.
fn start_line(zone: &str, offset_days: i64, time: &str, month: &str) -> String {
    let tz = TimeZone::get(zone).unwrap();
    let time: Time = time.parse().unwrap();
    let start = start_at(&tz, offset_days, time, ym(month)).unwrap();
    format!("{month} {zone} {offset_days:+} {time} -> {} = {start}\n", start.to_zoned(tz.clone()))
}

#[test]
fn starts_across_offsets_years_and_zones() {
    let cases = [
        ("UTC", 0, "00:00", "2024-01"),
        ("UTC", 1, "18:00", "2024-10"),
        ("Europe/Berlin", -10, "18:00", "2025-01"),
        ("Europe/Berlin", 20, "18:00", "2024-12"),
        ("Europe/Berlin", 27, "18:00", "2024-12"),
        ("America/New_York", -27, "22:00", "2024-01"),
        ("America/New_York", -13, "09:00", "2025-01"),
        ("Australia/Sydney", 3, "08:00", "2025-02"),
        ("Australia/Sydney", -12, "23:30", "2026-01"),
        ("Asia/Kolkata", 0, "09:30", "2026-11"),
        ("Asia/Kolkata", 25, "00:00", "2027-12"),
        // The same wall-clock time on either side of a daylight saving change.
        ("Europe/Berlin", 0, "18:00", "2025-03"),
        ("Europe/Berlin", 0, "18:00", "2025-04"),
        ("Australia/Sydney", 0, "18:00", "2025-09"),
        ("Australia/Sydney", 0, "18:00", "2025-10"),
    ];
    let out: String = cases.iter().map(|(z, o, t, m)| start_line(z, *o, t, m)).collect();
    expect![[r#"
        2024-01 UTC +0 00:00:00 -> 2024-01-09T00:00:00+00:00[UTC] = 2024-01-09T00:00:00Z
        2024-10 UTC +1 18:00:00 -> 2024-10-09T18:00:00+00:00[UTC] = 2024-10-09T18:00:00Z
        2025-01 Europe/Berlin -10 18:00:00 -> 2025-01-04T18:00:00+01:00[Europe/Berlin] = 2025-01-04T17:00:00Z
        2024-12 Europe/Berlin +20 18:00:00 -> 2024-12-30T18:00:00+01:00[Europe/Berlin] = 2024-12-30T17:00:00Z
        2024-12 Europe/Berlin +27 18:00:00 -> 2025-01-06T18:00:00+01:00[Europe/Berlin] = 2025-01-06T17:00:00Z
        2024-01 America/New_York -27 22:00:00 -> 2023-12-13T22:00:00-05:00[America/New_York] = 2023-12-14T03:00:00Z
        2025-01 America/New_York -13 09:00:00 -> 2025-01-01T09:00:00-05:00[America/New_York] = 2025-01-01T14:00:00Z
        2025-02 Australia/Sydney +3 08:00:00 -> 2025-02-14T08:00:00+11:00[Australia/Sydney] = 2025-02-13T21:00:00Z
        2026-01 Australia/Sydney -12 23:30:00 -> 2026-01-01T23:30:00+11:00[Australia/Sydney] = 2026-01-01T12:30:00Z
        2026-11 Asia/Kolkata +0 09:30:00 -> 2026-11-10T09:30:00+05:30[Asia/Kolkata] = 2026-11-10T04:00:00Z
        2027-12 Asia/Kolkata +25 00:00:00 -> 2028-01-08T00:00:00+05:30[Asia/Kolkata] = 2028-01-07T18:30:00Z
        2025-03 Europe/Berlin +0 18:00:00 -> 2025-03-11T18:00:00+01:00[Europe/Berlin] = 2025-03-11T17:00:00Z
        2025-04 Europe/Berlin +0 18:00:00 -> 2025-04-08T18:00:00+02:00[Europe/Berlin] = 2025-04-08T16:00:00Z
        2025-09 Australia/Sydney +0 18:00:00 -> 2025-09-09T18:00:00+10:00[Australia/Sydney] = 2025-09-09T08:00:00Z
        2025-10 Australia/Sydney +0 18:00:00 -> 2025-10-14T18:00:00+11:00[Australia/Sydney] = 2025-10-14T07:00:00Z
    "#]]
    .assert_eq(&out);
}

/// Start times inside a spring-forward gap move forward by the gap; inside a fall-back overlap
/// the earlier instant wins.
#[test]
fn starts_on_daylight_saving_days() {
    let cases = [
        // Gaps: Berlin 2025-03-30 02:00 -> 03:00; New York 2025-03-09 02:00 -> 03:00;
        // Sydney 2025-10-05 02:00 -> 03:00.
        ("Europe/Berlin", 19, "02:30", "2025-03"),
        ("Europe/Berlin", 19, "02:00", "2025-03"),
        ("Europe/Berlin", 19, "03:00", "2025-03"),
        ("America/New_York", -2, "02:30", "2025-03"),
        ("Australia/Sydney", -9, "02:30", "2025-10"),
        // Overlaps: Berlin 2025-10-26 03:00 -> 02:00; New York 2025-11-02 02:00 -> 01:00;
        // Sydney 2026-04-05 03:00 -> 02:00.
        ("Europe/Berlin", 12, "02:30", "2025-10"),
        ("America/New_York", -9, "01:30", "2025-11"),
        ("Australia/Sydney", -9, "02:30", "2026-04"),
    ];
    let out: String = cases.iter().map(|(z, o, t, m)| start_line(z, *o, t, m)).collect();
    expect![[r#"
        2025-03 Europe/Berlin +19 02:30:00 -> 2025-03-30T03:30:00+02:00[Europe/Berlin] = 2025-03-30T01:30:00Z
        2025-03 Europe/Berlin +19 02:00:00 -> 2025-03-30T03:00:00+02:00[Europe/Berlin] = 2025-03-30T01:00:00Z
        2025-03 Europe/Berlin +19 03:00:00 -> 2025-03-30T03:00:00+02:00[Europe/Berlin] = 2025-03-30T01:00:00Z
        2025-03 America/New_York -2 02:30:00 -> 2025-03-09T03:30:00-04:00[America/New_York] = 2025-03-09T07:30:00Z
        2025-10 Australia/Sydney -9 02:30:00 -> 2025-10-05T03:30:00+11:00[Australia/Sydney] = 2025-10-04T16:30:00Z
        2025-10 Europe/Berlin +12 02:30:00 -> 2025-10-26T02:30:00+02:00[Europe/Berlin] = 2025-10-26T00:30:00Z
        2025-11 America/New_York -9 01:30:00 -> 2025-11-02T01:30:00-04:00[America/New_York] = 2025-11-02T05:30:00Z
        2026-04 Australia/Sydney -9 02:30:00 -> 2026-04-05T02:30:00+11:00[Australia/Sydney] = 2026-04-04T15:30:00Z
    "#]]
    .assert_eq(&out);
}

#[test]
fn month_start_reads_the_campaign() {
    let c = campaign("Europe/Berlin", 19, "02:30", 0);
    assert_eq!(month_start(&c, ym("2025-03")).unwrap(), ts("2025-03-30T01:30:00Z"));
    assert_eq!(
        month_start(&c, ym("9999-12")),
        Err(ScheduleError::OutOfRange { month: ym("9999-12") }),
        "Patch Tuesday + 19 days is past jiff's last day"
    );
}

/// Consecutive windows of a Berlin campaign: the first reaches back 30 days, the rest chain.
#[test]
fn advisory_windows_chain_from_the_first_month() {
    let c = campaign("Europe/Berlin", 1, "18:00", 30);
    let first = ym("2025-01");
    let tz = c.time_zone().clone();
    let mut out = String::new();
    for month in ["2024-12", "2025-01", "2025-02", "2025-03", "2025-04", "2025-12", "2026-01"] {
        match advisory_window(&c, ym(month), first) {
            Ok(w) => {
                out.push_str(&format!("{month}: {} .. {}\n", w.from.to_zoned(tz.clone()), w.to.to_zoned(tz.clone())))
            }
            Err(e) => out.push_str(&format!("{month}: error: {e}\n")),
        }
    }
    expect![[r#"
        2024-12: error: campaign month 2024-12 is before the campaign's first month 2025-01
        2025-01: 2024-12-16T18:00:00+01:00[Europe/Berlin] .. 2025-01-15T18:00:00+01:00[Europe/Berlin]
        2025-02: 2025-01-15T18:00:00+01:00[Europe/Berlin] .. 2025-02-12T18:00:00+01:00[Europe/Berlin]
        2025-03: 2025-02-12T18:00:00+01:00[Europe/Berlin] .. 2025-03-12T18:00:00+01:00[Europe/Berlin]
        2025-04: 2025-03-12T18:00:00+01:00[Europe/Berlin] .. 2025-04-09T18:00:00+02:00[Europe/Berlin]
        2025-12: 2025-11-12T18:00:00+01:00[Europe/Berlin] .. 2025-12-10T18:00:00+01:00[Europe/Berlin]
        2026-01: 2025-12-10T18:00:00+01:00[Europe/Berlin] .. 2026-01-14T18:00:00+01:00[Europe/Berlin]
    "#]]
    .assert_eq(&out);
}

#[test]
fn lookback_counts_calendar_days_across_daylight_saving() {
    let c = campaign("Europe/Berlin", 1, "18:00", 30);
    let w = advisory_window(&c, ym("2025-04"), ym("2025-04")).unwrap();
    // 30 calendar days before 2025-04-09 18:00 CEST is 2025-03-10 18:00 CET: 30 days and 1 hour.
    assert_eq!(w.from, ts("2025-03-10T17:00:00Z"));
    assert_eq!(w.to, ts("2025-04-09T16:00:00Z"));
    let none = campaign("UTC", 0, "00:00", 0);
    let w = advisory_window(&none, ym("2025-04"), ym("2025-04")).unwrap();
    assert_eq!(w.from, w.to, "a lookback of zero collects nothing in the first month");
}

#[test]
fn windows_are_half_open() {
    let w = AdvisoryWindow { from: ts("2025-01-15T17:00:00Z"), to: ts("2025-02-12T17:00:00Z") };
    assert!(w.contains(ts("2025-01-15T17:00:00Z")));
    assert!(w.contains(ts("2025-02-12T16:59:59.999Z")));
    assert!(!w.contains(ts("2025-02-12T17:00:00Z")), "belongs to the next month");
    assert!(!w.contains(ts("2025-01-15T16:59:59Z")));
}

#[test]
fn the_first_month_is_the_first_start_not_yet_passed() {
    let cases = [
        // Berlin +1 18:00: January 2025 starts 2025-01-15 18:00 CET (17:00 UTC).
        (campaign("Europe/Berlin", 1, "18:00", 0), "2025-01-15T16:59:00Z"),
        (campaign("Europe/Berlin", 1, "18:00", 0), "2025-01-15T17:00:00Z"),
        (campaign("Europe/Berlin", 1, "18:00", 0), "2025-01-15T17:01:00Z"),
        (campaign("Europe/Berlin", 1, "18:00", 0), "2025-01-01T00:00:00Z"),
        // -27: January 2025 starts 2024-12-18, February 2025 on 2025-01-15.
        (campaign("UTC", -27, "00:00", 0), "2024-12-17T00:00:00Z"),
        (campaign("UTC", -27, "00:00", 0), "2024-12-20T00:00:00Z"),
        // +27: December 2024 starts 2025-01-06, January 2025 on 2025-02-10.
        (campaign("UTC", 27, "00:00", 0), "2025-01-02T00:00:00Z"),
        (campaign("UTC", 27, "00:00", 0), "2025-01-07T00:00:00Z"),
        // Sydney: local time is already the next month.
        (campaign("Australia/Sydney", 0, "09:00", 0), "2025-02-28T20:00:00Z"),
    ];
    let out: String = cases.iter().map(|(c, at)| format!("{at} -> {}\n", first_month(c, ts(at)).unwrap())).collect();
    expect![[r#"
        2025-01-15T16:59:00Z -> 2025-01
        2025-01-15T17:00:00Z -> 2025-01
        2025-01-15T17:01:00Z -> 2025-02
        2025-01-01T00:00:00Z -> 2025-01
        2024-12-17T00:00:00Z -> 2025-01
        2024-12-20T00:00:00Z -> 2025-02
        2025-01-02T00:00:00Z -> 2024-12
        2025-01-07T00:00:00Z -> 2025-01
        2025-02-28T20:00:00Z -> 2025-03
    "#]]
    .assert_eq(&out);
}

#[test]
fn year_months_parse_print_and_step() {
    let out: String =
        ["2025-03", "1970-01", "9999-12", "2025-3", "1969-12", "2025-13", "2025-00", "25-03", "2025/03", "+202-03"]
            .iter()
            .map(|t| match t.parse::<YearMonth>() {
                Ok(m) => format!(
                    "{t}: {m}, next {:?}, previous {:?}\n",
                    m.next().map(|m| m.to_string()),
                    m.previous().map(|m| m.to_string())
                ),
                Err(e) => format!("{t}: error: {e}\n"),
            })
            .collect();
    expect![[r#"
        2025-03: 2025-03, next Ok("2025-04"), previous Ok("2025-02")
        1970-01: 1970-01, next Ok("1970-02"), previous Err(BadMonth { text: "1969-12" })
        9999-12: 9999-12, next Err(BadMonth { text: "10000-01" }), previous Ok("9999-11")
        2025-3: error: `2025-3` is not a campaign month: expected YYYY-MM from 1970-01 to 9999-12, e.g. `2025-03`
        1969-12: error: `1969-12` is not a campaign month: expected YYYY-MM from 1970-01 to 9999-12, e.g. `2025-03`
        2025-13: error: `2025-13` is not a campaign month: expected YYYY-MM from 1970-01 to 9999-12, e.g. `2025-03`
        2025-00: error: `2025-00` is not a campaign month: expected YYYY-MM from 1970-01 to 9999-12, e.g. `2025-03`
        25-03: error: `25-03` is not a campaign month: expected YYYY-MM from 1970-01 to 9999-12, e.g. `2025-03`
        2025/03: error: `2025/03` is not a campaign month: expected YYYY-MM from 1970-01 to 9999-12, e.g. `2025-03`
        +202-03: error: `+202-03` is not a campaign month: expected YYYY-MM from 1970-01 to 9999-12, e.g. `2025-03`
    "#]]
    .assert_eq(&out);
    assert_eq!(next_month(ym("2024-12")).unwrap(), ym("2025-01"));
    assert_eq!(ym("2025-01").previous().unwrap(), ym("2024-12"));
}
