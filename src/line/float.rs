//! Go's `strconv.ParseFloat(s, 64)`, which statsd_exporter uses for values and sample rates.
//!
//! Rust's `f64::from_str` is not a drop-in: it has no hex floats (`0x1p-2`) and no `_` digit
//! separators, and it returns `inf` for an overflowing literal where Go returns an error.
//! Go also returns a value together with a range error (±Inf), and statsd_exporter goes on
//! using that value as a sample rate, so [`FloatError::Range`] carries it.

/// Why a text is not a Go float.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) enum FloatError {
    /// Not a float at all; Go returns 0 with the error.
    Syntax,
    /// Well formed but too large; Go returns ±Inf with the error.
    Range(f64),
}

impl FloatError {
    /// The value Go's `ParseFloat` returns alongside this error.
    pub(super) fn value(self) -> f64 {
        match self {
            FloatError::Syntax => 0.0,
            FloatError::Range(v) => v,
        }
    }
}

/// Parses `s` exactly as Go's `strconv.ParseFloat(s, 64)` does: decimal and hex floats, an
/// optional sign, `_` between digits, `inf`/`infinity` (signed) and `nan` (unsigned), all
/// case-insensitive. Overflow is a [`FloatError::Range`]; underflow rounds to zero silently.
pub(super) fn parse_go_float(s: &str) -> Result<f64, FloatError> {
    let bytes = s.as_bytes();
    if let Some(v) = special(bytes) {
        return Ok(v);
    }
    let (negative, body) = match bytes.first() {
        Some(b'+') => (false, &bytes[1..]),
        Some(b'-') => (true, &bytes[1..]),
        _ => (false, bytes),
    };
    // Go needs at least one character after the `0x` to take the hex branch.
    let parsed = if body.len() > 2 && body[0] == b'0' && lower(body[1]) == b'x' {
        parse_hex(&body[2..], negative)
    } else {
        parse_decimal(body, s)
    }?;
    if !underscores_ok(bytes) {
        return Err(FloatError::Syntax);
    }
    Ok(parsed)
}

fn lower(b: u8) -> u8 {
    b | 0x20
}

/// `inf`, `infinity` (with an optional sign) and `nan` (without one), matched whole.
fn special(s: &[u8]) -> Option<f64> {
    let (sign, word) = match s.first() {
        Some(b'+') => (1.0, &s[1..]),
        Some(b'-') => (-1.0, &s[1..]),
        _ => {
            if s.eq_ignore_ascii_case(b"nan") {
                return Some(f64::NAN);
            }
            (1.0, s)
        }
    };
    if word.eq_ignore_ascii_case(b"inf") || word.eq_ignore_ascii_case(b"infinity") {
        Some(sign * f64::INFINITY)
    } else {
        None
    }
}

/// Go's `underscoreOK`: an `_` must sit between two digits, or between a base prefix and a
/// digit. Without any `_` this is trivially true.
fn underscores_ok(s: &[u8]) -> bool {
    if !s.contains(&b'_') {
        return true;
    }
    let s = match s.first() {
        Some(b'+' | b'-') => &s[1..],
        _ => s,
    };
    #[derive(PartialEq)]
    enum Saw {
        Start,
        Digit,
        Underscore,
        Other,
    }
    let mut saw = Saw::Start;
    let mut i = 0;
    let mut hex = false;
    if s.len() >= 2 && s[0] == b'0' && matches!(lower(s[1]), b'b' | b'o' | b'x') {
        i = 2;
        // The base prefix counts as a digit for "underscore as digit separator".
        saw = Saw::Digit;
        hex = lower(s[1]) == b'x';
    }
    for &c in &s[i..] {
        if c.is_ascii_digit() || (hex && matches!(lower(c), b'a'..=b'f')) {
            saw = Saw::Digit;
        } else if c == b'_' {
            if saw != Saw::Digit {
                return false;
            }
            saw = Saw::Underscore;
        } else if saw == Saw::Underscore {
            return false;
        } else {
            saw = Saw::Other;
        }
    }
    saw != Saw::Underscore
}

/// Decimal: digits with at most one `.`, at least one digit, then an optional exponent that
/// must have digits. `whole` is the text with its sign, handed to Rust's correctly rounded
/// parser once Go's syntax is confirmed.
fn parse_decimal(body: &[u8], whole: &str) -> Result<f64, FloatError> {
    let mut i = 0;
    let mut saw_dot = false;
    let mut saw_digits = false;
    let mut underscores = false;
    while i < body.len() {
        match body[i] {
            b'_' => underscores = true,
            b'.' if !saw_dot => saw_dot = true,
            b'0'..=b'9' => saw_digits = true,
            _ => break,
        }
        i += 1;
    }
    if !saw_digits {
        return Err(FloatError::Syntax);
    }
    if i < body.len() && lower(body[i]) == b'e' {
        i = exponent_end(body, i + 1).ok_or(FloatError::Syntax)?;
        underscores |= body.contains(&b'_');
    }
    if i != body.len() {
        return Err(FloatError::Syntax);
    }
    let value = if underscores {
        // Rare: digit separators must go before Rust's parser sees the text.
        whole.replace('_', "").parse::<f64>()
    } else {
        whole.parse::<f64>()
    }
    .map_err(|_| FloatError::Syntax)?;
    if value.is_infinite() {
        return Err(FloatError::Range(value));
    }
    Ok(value)
}

/// Skips `[+-]digits` (digits may include `_`) from `start`; `None` if there are no digits.
fn exponent_end(s: &[u8], start: usize) -> Option<usize> {
    let mut i = start;
    if matches!(s.get(i), Some(b'+' | b'-')) {
        i += 1;
    }
    if !s.get(i)?.is_ascii_digit() {
        return None;
    }
    while i < s.len() && (s[i].is_ascii_digit() || s[i] == b'_') {
        i += 1;
    }
    Some(i)
}

/// Hex float after the `0x`: hex digits with at most one `.`, then a mandatory `p` exponent.
fn parse_hex(s: &[u8], negative: bool) -> Result<f64, FloatError> {
    // Up to 16 significant hex digits fit a u64; later non-zero digits only matter for
    // rounding, as a sticky bit.
    let mut mantissa: u64 = 0;
    let mut digits = 0;
    let mut exp2: i64 = 0;
    let mut sticky = false;
    let mut saw_dot = false;
    let mut saw_digits = false;
    let mut i = 0;
    while i < s.len() {
        let c = s[i];
        let d = match c {
            b'_' => {
                i += 1;
                continue;
            }
            b'.' if !saw_dot => {
                saw_dot = true;
                i += 1;
                continue;
            }
            b'0'..=b'9' => c - b'0',
            _ if matches!(lower(c), b'a'..=b'f') => lower(c) - b'a' + 10,
            _ => break,
        };
        saw_digits = true;
        if mantissa == 0 && d == 0 {
            if saw_dot {
                exp2 -= 4;
            }
        } else if digits < 16 {
            mantissa = mantissa * 16 + u64::from(d);
            digits += 1;
            if saw_dot {
                exp2 -= 4;
            }
        } else {
            sticky |= d != 0;
            if !saw_dot {
                exp2 += 4;
            }
        }
        i += 1;
    }
    if !saw_digits || i >= s.len() || lower(s[i]) != b'p' {
        return Err(FloatError::Syntax);
    }
    let end = exponent_end(s, i + 1).ok_or(FloatError::Syntax)?;
    if end != s.len() {
        return Err(FloatError::Syntax);
    }
    let mut j = i + 1;
    let exp_negative = s[j] == b'-';
    if matches!(s[j], b'+' | b'-') {
        j += 1;
    }
    // Go caps the exponent the same way; anything this large is already ±Inf or 0.
    let mut e: i64 = 0;
    for &c in &s[j..end] {
        if c.is_ascii_digit() && e < 100_000 {
            e = e * 10 + i64::from(c - b'0');
        }
    }
    exp2 += if exp_negative { -e } else { e };
    round_binary(mantissa, exp2, sticky, negative)
}

/// `mantissa * 2^exp2` (plus a sticky fraction) rounded half-to-even to an f64.
fn round_binary(mantissa: u64, exp2: i64, sticky: bool, negative: bool) -> Result<f64, FloatError> {
    let sign = if negative { 1u64 << 63 } else { 0 };
    if mantissa == 0 {
        return Ok(f64::from_bits(sign));
    }
    let lz = mantissa.leading_zeros();
    let m = mantissa << lz;
    // value = (m / 2^63) * 2^e, with m's top bit set.
    let mut e = exp2 - i64::from(lz) + 63;
    let round = |kept: u64, rem: u64, half: u64| -> u64 {
        if rem > half || (rem == half && (sticky || kept & 1 == 1)) {
            kept + 1
        } else {
            kept
        }
    };
    if e >= -1022 {
        let mut kept = round(m >> 11, m & 0x7ff, 0x400);
        if kept == 1 << 53 {
            kept >>= 1;
            e += 1;
        }
        if e > 1023 {
            let inf = if negative {
                f64::NEG_INFINITY
            } else {
                f64::INFINITY
            };
            return Err(FloatError::Range(inf));
        }
        let biased = (e + 1023) as u64;
        return Ok(f64::from_bits(
            sign | biased << 52 | (kept & ((1 << 52) - 1)),
        ));
    }
    // Subnormal: count in units of 2^-1074. A carry into bit 52 yields the smallest normal,
    // which is exactly the right encoding.
    let shift = -(e + 1011);
    let kept = match shift {
        65.. => 0,
        64 => round(0, m, 1 << 63),
        _ => round(m >> shift, m & ((1u64 << shift) - 1), 1u64 << (shift - 1)),
    };
    Ok(f64::from_bits(sign | kept))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(s: &str) -> f64 {
        match parse_go_float(s) {
            Ok(v) => v,
            Err(e) => panic!("{s:?} rejected: {e:?}"),
        }
    }

    #[test]
    fn decimal_forms() {
        assert_eq!(ok("1"), 1.0);
        assert_eq!(ok("+5"), 5.0);
        assert_eq!(ok("-5"), -5.0);
        assert_eq!(ok("1e3"), 1000.0);
        assert_eq!(ok("1E+3"), 1000.0);
        assert_eq!(ok("2.5e-1"), 0.25);
        assert_eq!(ok("1."), 1.0);
        assert_eq!(ok(".5"), 0.5);
        assert_eq!(ok("0.01"), 0.01);
        assert_eq!(ok("1e-400"), 0.0, "underflow is not an error in Go");
    }

    #[test]
    fn specials() {
        for s in ["inf", "+Inf", "INF", "infinity", "+Infinity", "iNfInItY"] {
            assert_eq!(ok(s), f64::INFINITY, "{s}");
        }
        assert_eq!(ok("-inf"), f64::NEG_INFINITY);
        assert_eq!(ok("-Infinity"), f64::NEG_INFINITY);
        assert!(ok("NaN").is_nan());
        assert!(ok("nan").is_nan());
        for s in ["+nan", "-NaN", "infin", "infinityy", "in", "nanx"] {
            assert_eq!(parse_go_float(s), Err(FloatError::Syntax), "{s}");
        }
    }

    #[test]
    fn hex_floats() {
        assert_eq!(ok("0x1p-2"), 0.25);
        assert_eq!(ok("0X1P+4"), 16.0);
        assert_eq!(ok("-0x1.8p1"), -3.0);
        assert_eq!(ok("0x.8p1"), 1.0);
        assert_eq!(ok("0x00.01p0"), 1.0 / 256.0);
        assert_eq!(ok("0x1.fffffffffffffp1023"), f64::MAX);
        assert_eq!(ok("0x1p-1074"), f64::from_bits(1));
        assert_eq!(ok("0x1p-1075"), 0.0, "ties to even");
        assert_eq!(ok("0x1.8p-1075"), f64::from_bits(1));
        assert_eq!(ok("0x1.00000000000008p0"), 1.0, "half way rounds to even");
        assert_eq!(
            ok("0x1.000000000000080000001p0"),
            1.0000000000000002,
            "sticky"
        );
        assert_eq!(ok("0x1.00000000000018p0"), 1.0000000000000004);
        assert_eq!(ok("0x_1_2.3_4_5p+1_2"), 74565.0);
        assert_eq!(
            parse_go_float("0x1p1024"),
            Err(FloatError::Range(f64::INFINITY))
        );
        for s in ["0x1", "0x1.8", "0xp1", "0x", "0x1p", "0x1p+", "0x1e2"] {
            assert_eq!(parse_go_float(s), Err(FloatError::Syntax), "{s}");
        }
    }

    #[test]
    fn underscores_follow_go() {
        // Go's own atof tests: `_` is accepted between digits, even without a base prefix.
        assert_eq!(ok("1_23.50_0_0e+1_2"), 1.235e14);
        assert_eq!(ok("1_000"), 1000.0);
        for s in [
            "_1", "-_1", "1__0", "1_", "123_.5", "123._5", "123.5_e1", "1e_1", "1e1_", "0x__1p0",
        ] {
            assert_eq!(parse_go_float(s), Err(FloatError::Syntax), "{s}");
        }
    }

    #[test]
    fn rejects_what_go_rejects() {
        for s in [
            "", "+", "-", ".", "e1", "1e", "1e+", "1.2.3", "1o", " 1", "1 ", "0b1", "1f", "--1",
            "+-1",
        ] {
            assert_eq!(parse_go_float(s), Err(FloatError::Syntax), "{s:?}");
        }
    }

    #[test]
    fn overflow_is_a_range_error_carrying_inf() {
        assert_eq!(
            parse_go_float("1e400"),
            Err(FloatError::Range(f64::INFINITY))
        );
        assert_eq!(
            parse_go_float("-1e400"),
            Err(FloatError::Range(f64::NEG_INFINITY))
        );
        assert_eq!(FloatError::Range(f64::INFINITY).value(), f64::INFINITY);
        assert_eq!(FloatError::Syntax.value(), 0.0);
    }
}
