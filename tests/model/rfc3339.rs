//! RFC 3339 date-times (section 5.6) to Unix milliseconds, by hand:
//! `YYYY-MM-DD T HH:MM:SS [.fraction] (Z | +HH:MM | -HH:MM)`.
//!
//! Reading: the README says "RFC 3339" and "compared at millisecond precision". Taken here:
//! the separator is `T`, `t` or a space (the RFC's note on readability allows the space),
//! `Z` may be lower case, the fraction has one digit or more and digits past the millisecond
//! are dropped (toward the past), seconds go to 59 (leap seconds are never generated).

pub fn parse_ms(text: &str) -> Option<i64> {
    let b = text.as_bytes();
    let digits = |from: usize, len: usize| -> Option<i64> {
        let part = b.get(from..from + len)?;
        part.iter().try_fold(0i64, |acc, &c| {
            c.is_ascii_digit().then(|| acc * 10 + i64::from(c - b'0'))
        })
    };
    let literal = |at: usize, allowed: &[u8]| b.get(at).is_some_and(|c| allowed.contains(c));
    let year = digits(0, 4)?;
    let month = digits(5, 2)?;
    let day = digits(8, 2)?;
    let hour = digits(11, 2)?;
    let minute = digits(14, 2)?;
    let second = digits(17, 2)?;
    if !(literal(4, b"-")
        && literal(7, b"-")
        && literal(10, b"Tt ")
        && literal(13, b":")
        && literal(16, b":"))
    {
        return None;
    }
    if !(1..=12).contains(&month)
        || day < 1
        || day > days_in_month(year, month)
        || hour > 23
        || minute > 59
        || second > 59
    {
        return None;
    }
    let mut i = 19;
    let mut millis = 0;
    if literal(i, b".") {
        i += 1;
        let start = i;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            if i - start < 3 {
                millis = millis * 10 + i64::from(b[i] - b'0');
            }
            i += 1;
        }
        if i == start {
            return None;
        }
        for _ in (i - start)..3 {
            millis *= 10;
        }
    }
    let offset_minutes = if literal(i, b"Zz") {
        i += 1;
        0
    } else if literal(i, b"+-") {
        let sign = if b[i] == b'-' { -1 } else { 1 };
        let hours = digits(i + 1, 2)?;
        let minutes = digits(i + 4, 2)?;
        if !literal(i + 3, b":") || hours > 23 || minutes > 59 {
            return None;
        }
        i += 6;
        sign * (hours * 60 + minutes)
    } else {
        return None;
    };
    if i != b.len() {
        return None;
    }
    let days = days_from_civil(year, month, day);
    let seconds = ((days * 24 + hour) * 60 + minute) * 60 + second - offset_minutes * 60;
    Some(seconds * 1_000 + millis)
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

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}
