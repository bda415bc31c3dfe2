//! FollowTheSun windows: daily `HH:MM`–`HH:MM` ranges in UTC that may wrap
//! midnight.

use jiff::Timestamp;

use crate::api::ActiveWindow;

const DAY: i64 = 24 * 60 * 60;

/// Seconds since UTC midnight of `HH:MM`, or None when malformed (the schema
/// rejects those, so this only guards against old objects).
pub fn parse_hhmm(s: &str) -> Option<i64> {
    let (h, m) = s.split_once(':')?;
    let (h, m): (i64, i64) = (h.parse().ok()?, m.parse().ok()?);
    ((0..24).contains(&h) && (0..60).contains(&m)).then_some(h * 3600 + m * 60)
}

fn second_of_day(now: Timestamp) -> i64 {
    now.as_second().rem_euclid(DAY)
}

/// The window contains `now`: start inclusive, end exclusive; start == end
/// means all day.
pub fn contains(window: &ActiveWindow, now: Timestamp) -> bool {
    let (Some(start), Some(end)) = (parse_hhmm(&window.start), parse_hhmm(&window.end)) else {
        return false;
    };
    let t = second_of_day(now);
    if start == end {
        true
    } else if start < end {
        start <= t && t < end
    } else {
        t >= start || t < end
    }
}

/// Seconds from `now` until the window next opens (0 when open now).
pub fn seconds_until_open(window: &ActiveWindow, now: Timestamp) -> Option<i64> {
    if contains(window, now) {
        return Some(0);
    }
    let start = parse_hhmm(&window.start)?;
    Some((start - second_of_day(now)).rem_euclid(DAY))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(start: &str, end: &str) -> ActiveWindow {
        ActiveWindow {
            start: start.into(),
            end: end.into(),
        }
    }

    fn at(hhmm: &str) -> Timestamp {
        Timestamp::from_second(1_800_000_000 / DAY * DAY + parse_hhmm(hhmm).unwrap()).unwrap()
    }

    #[test]
    fn windows_contain_their_start_but_not_their_end() {
        let day = w("08:00", "16:00");
        assert!(!contains(&day, at("07:59")));
        assert!(contains(&day, at("08:00")));
        assert!(contains(&day, at("15:59")));
        assert!(!contains(&day, at("16:00")));
    }

    #[test]
    fn windows_wrap_midnight() {
        let night = w("22:00", "06:00");
        assert!(contains(&night, at("23:30")));
        assert!(contains(&night, at("00:00")));
        assert!(contains(&night, at("05:59")));
        assert!(!contains(&night, at("06:00")));
        assert!(!contains(&night, at("21:59")));
        assert!(
            contains(&w("00:00", "00:00"), at("12:00")),
            "equal ends mean all day"
        );
    }

    #[test]
    fn time_until_a_window_opens_wraps_the_day() {
        assert_eq!(
            seconds_until_open(&w("08:00", "16:00"), at("07:55")),
            Some(300)
        );
        assert_eq!(
            seconds_until_open(&w("08:00", "16:00"), at("09:00")),
            Some(0)
        );
        assert_eq!(
            seconds_until_open(&w("00:10", "08:00"), at("23:50")),
            Some(20 * 60)
        );
    }

    #[test]
    fn malformed_times_are_rejected() {
        for bad in ["24:00", "7:5x", "", "12", "12:60"] {
            assert_eq!(parse_hhmm(bad), None, "{bad}");
        }
        assert_eq!(parse_hhmm("07:05"), Some(7 * 3600 + 5 * 60));
    }
}
