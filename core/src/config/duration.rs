//! Durations as the config writes them: a number and a unit (`250ms`, `10s`, `1.5s`, `1m`,
//! `1h`), as in Envoy and Istio YAML.

use super::quote;

/// Longest duration accepted: 24h.
const MAX_DURATION_MS: u64 = 86_400_000;

/// `250ms`, `10s`, `1.5s`, `1m`, `1h` -> milliseconds, rounded half up. A unit is required, as
/// in Envoy and Istio YAML. Decimal arithmetic, no floating point: `0.0045s` is 5ms.
pub fn parse_duration_ms(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .ok_or_else(|| format!("{} needs a unit (ms, s, m or h)", quote(s)))?;
    let (number, unit) = s.split_at(split);
    let scale: u64 = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        _ => {
            return Err(format!(
                "{} has an unknown unit {} (use ms, s, m or h)",
                quote(s),
                quote(unit)
            ))
        }
    };
    // Digits, at most one `.`, and a digit somewhere (`5.` and `.5` are numbers).
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    if fraction.contains('.') || (whole.is_empty() && fraction.is_empty()) {
        return Err(format!("{} is not a number with a unit", quote(s)));
    }
    let out_of_range = || format!("{} is out of range (at most 24h)", quote(s));
    let whole = whole.bytes().try_fold(0u64, |n, d| {
        n.checked_mul(10)?
            .checked_add(u64::from(d.saturating_sub(b'0')))
    });
    let ms = whole
        .and_then(|n| n.checked_mul(scale))
        .and_then(|n| n.checked_add(fraction_times(fraction, scale)))
        .filter(|&ms| ms <= MAX_DURATION_MS)
        .ok_or_else(out_of_range)?;
    Ok(ms)
}

/// `0.<digits> * scale`, rounded half up: long multiplication from the last digit, exact for
/// any number of digits (`scale` is small, so nothing overflows).
fn fraction_times(digits: &str, scale: u64) -> u64 {
    let (mut carry, mut first_decimal) = (0u64, 0u64);
    for d in digits.bytes().rev() {
        let v = u64::from(d.saturating_sub(b'0')) * scale + carry;
        first_decimal = v % 10;
        carry = v / 10;
    }
    carry + u64::from(first_decimal >= 5)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration_ms("250ms"), Ok(250));
        assert_eq!(parse_duration_ms("10s"), Ok(10_000));
        assert_eq!(parse_duration_ms("1.5s"), Ok(1_500));
        assert_eq!(parse_duration_ms("1m"), Ok(60_000));
        assert_eq!(parse_duration_ms("2h"), Ok(7_200_000));
        for bad in ["10", "", "s", "10 sec", "-1s", "1d", "25h"] {
            assert!(parse_duration_ms(bad).is_err(), "{bad}");
        }
    }

    /// Decimal arithmetic where `f64` was: the same results, exact at every length.
    #[test]
    fn durations_without_floating_point() {
        for (input, ms) in [
            (" 100ms ", 100),
            ("0.5ms", 1),
            ("0.49ms", 0),
            ("0.4999999999999999999999999ms", 0),
            ("0.5000000000000000000000001ms", 1),
            ("1.0005s", 1_001),
            ("0.0045s", 5),
            ("0.0044999s", 4),
            (".5s", 500),
            ("5.s", 5_000),
            ("0.25m", 15_000),
            ("1.5h", 5_400_000),
            ("0.000000000000000000000000000000001h", 0),
            ("0001s", 1_000),
            ("24h", 86_400_000),
            ("1440m", 86_400_000),
            ("86400000ms", 86_400_000),
            ("86400000.4ms", 86_400_000),
        ] {
            assert_eq!(parse_duration_ms(input), Ok(ms), "{input}");
        }
        for (input, reason) in [
            (".s", "not a number"),
            ("1.2.3s", "not a number"),
            ("1..s", "not a number"),
            ("86400000.5ms", "out of range"),
            ("24.000001h", "out of range"),
            ("99999999999999999999999999h", "out of range"),
            ("18446744073709551615ms", "out of range"),
            ("5000000000000h", "out of range"),
            ("1.5", "needs a unit"),
            ("1.5 s", "unknown unit"),
            ("1e3ms", "unknown unit"),
        ] {
            let e = parse_duration_ms(input).unwrap_err();
            assert!(e.contains(reason), "{input}: {e}");
        }
    }
}
