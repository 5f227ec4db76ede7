//! Dates as advisories write them: RFC 3339 (with any fraction), a date-time without a zone
//! (CVE 5.0 records, NVD, Microsoft's 2024 CVRF: UTC by their documentation), or a bare date
//! (KEV, NVD's KEV fields: midnight UTC).

use jiff::civil::{Date, DateTime};
use jiff::Timestamp;

/// Reads a timestamp in any of the forms above.
pub fn timestamp(text: &str) -> Result<Timestamp, String> {
    let text = text.trim();
    if let Ok(t) = text.parse::<Timestamp>() {
        return Ok(t);
    }
    if let Ok(dt) = text.parse::<DateTime>() {
        return dt.to_zoned(jiff::tz::TimeZone::UTC).map(|z| z.timestamp()).map_err(|e| e.to_string());
    }
    if let Ok(d) = text.parse::<Date>() {
        return d.to_zoned(jiff::tz::TimeZone::UTC).map(|z| z.timestamp()).map_err(|e| e.to_string());
    }
    Err(format!("`{text}` is not a date"))
}

/// An optional timestamp: absent or empty is None, anything else must parse.
pub fn optional(text: Option<&str>) -> Result<Option<Timestamp>, String> {
    match text.map(str::trim) {
        None | Some("") => Ok(None),
        Some(t) => timestamp(t).map(Some),
    }
}

/// Reads a calendar date (`2024-12-16`), or the date part of a timestamp.
pub fn date(text: &str) -> Result<Date, String> {
    let text = text.trim();
    if let Ok(d) = text.parse::<Date>() {
        return Ok(d);
    }
    timestamp(text).map(|t| t.to_zoned(jiff::tz::TimeZone::UTC).date())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_form_found_in_published_advisories_is_read() {
        for (text, expected) in [
            ("2022-01-04T08:38:00Z", "2022-01-04T08:38:00Z"),
            ("2024-03-12T00:00:00.000000Z", "2024-03-12T00:00:00Z"),
            ("2023-09-12T15:15:24.327", "2023-09-12T15:15:24.327Z"),
            ("2024-06-11T07:00:00", "2024-06-11T07:00:00Z"),
            ("2024-12-16", "2024-12-16T00:00:00Z"),
            ("2021-12-16T22:34:00+02:00", "2021-12-16T20:34:00Z"),
        ] {
            assert_eq!(timestamp(text).unwrap().to_string(), expected, "{text}");
        }
        assert!(timestamp("last tuesday").is_err());
        assert_eq!(optional(Some(" ")).unwrap(), None);
        assert_eq!(date("2023-10-04").unwrap().to_string(), "2023-10-04");
        assert_eq!(date("2023-10-04T23:00:00Z").unwrap().to_string(), "2023-10-04");
    }
}
