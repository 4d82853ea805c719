//! RFC 3339 section 5.6 `date-time`, to Unix milliseconds, written from the RFC:
//!
//! ```text
//! date-time  = full-date "T" full-time        ; "T" and "Z" may be lower case (5.6, NOTE);
//! full-date  = 4DIGIT "-" 2DIGIT "-" 2DIGIT   ; a space may separate date and time (NOTE)
//! full-time  = 2DIGIT ":" 2DIGIT ":" 2DIGIT ["." 1*DIGIT] ("Z" / ("+" / "-") 2DIGIT ":" 2DIGIT)
//! ```
//!
//! Days are checked against the month (Gregorian leap years), hours 00-23, minutes 00-59,
//! seconds 00-60. A leap second (`60`) can only be the last second of a month in UTC (5.7,
//! ITU-R TF.460); as Unix time has no room for it, it reads as that minute's last millisecond.
//! Digits below the millisecond are truncated (toward the past, as the README says).

pub fn to_unix_ms(text: &str) -> Option<i64> {
    let b = text.as_bytes();
    if b.len() < 20 {
        return None;
    }
    let number = |from: usize, len: usize| -> Option<i64> {
        let digits = b.get(from..from + len)?;
        digits.iter().try_fold(0i64, |n, &d| {
            d.is_ascii_digit().then(|| n * 10 + i64::from(d - b'0'))
        })
    };
    let literal = |at: usize, expected: &[u8]| b.get(at).is_some_and(|c| expected.contains(c));
    let year = number(0, 4)?;
    let month = number(5, 2)?;
    let day = number(8, 2)?;
    let hour = number(11, 2)?;
    let minute = number(14, 2)?;
    let second = number(17, 2)?;
    if !(literal(4, b"-")
        && literal(7, b"-")
        && literal(10, b"Tt ")
        && literal(13, b":")
        && literal(16, b":"))
    {
        return None;
    }
    let mut at = 19;
    let mut millis = 0;
    if b.get(at) == Some(&b'.') {
        at += 1;
        let start = at;
        while b.get(at).is_some_and(u8::is_ascii_digit) {
            if at - start < 3 {
                millis = millis * 10 + i64::from(b[at] - b'0');
            }
            at += 1;
        }
        match at - start {
            0 => return None,
            1 => millis *= 100,
            2 => millis *= 10,
            _ => {}
        }
    }
    let offset_minutes = match b.get(at)? {
        b'Z' | b'z' => {
            at += 1;
            0
        }
        sign @ (b'+' | b'-') => {
            let hours = number(at + 1, 2)?;
            let minutes = number(at + 4, 2)?;
            if !literal(at + 3, b":") || hours > 23 || minutes > 59 {
                return None;
            }
            at += 6;
            let offset = hours * 60 + minutes;
            if *sign == b'-' {
                -offset
            } else {
                offset
            }
        }
        _ => return None,
    };
    if at != b.len() {
        return None;
    }
    if !(1..=12).contains(&month)
        || day < 1
        || day > days_in_month(year, month)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    let local_minute = days_from_civil(year, month, day) * 1440 + hour * 60 + minute;
    let utc_minute = local_minute - offset_minutes;
    if second == 60 {
        // The last minute of a month, in UTC.
        let (utc_year, utc_month, utc_day) = civil_from_days(utc_minute.div_euclid(1440));
        if utc_minute.rem_euclid(1440) != 1439 || utc_day != days_in_month(utc_year, utc_month) {
            return None;
        }
        return Some(utc_minute * 60_000 + 59_999);
    }
    Some(utc_minute * 60_000 + second * 1000 + millis)
}

fn is_leap(year: i64) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's `days_from_civil`).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The inverse of [`days_from_civil`].
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}
