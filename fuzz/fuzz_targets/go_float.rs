//! Fuzzes `parse_value` (Go's `strconv.ParseFloat(s, 64)`) against an independent reference:
//!
//! * the decimal subset (`[+-]digits[.digits][e[+-]digits]`): Rust's `str::parse::<f64>` is
//!   correctly rounded, so both must agree bit for bit; where Rust overflows to ±Inf, Go
//!   reports a range error, which `parse_value` turns into `None`;
//! * `inf`/`infinity` (optional sign) and `nan` (no sign), any case;
//! * `_` separators: accepted only where Go's `underscoreOK` allows (between digits, or
//!   after a base prefix), and then the value is the one without them;
//! * hex floats (`0x` mantissa, a `p` exponent required): with at most 15 hex digits the
//!   mantissa is exact in a `u64`, so `m * 2^k` rounds once and is the reference whenever
//!   the result is normal; subnormal results are only required to be finite;
//! * everything else is not a float.
#![no_main]

use libfuzzer_sys::fuzz_target;
use statsgate::line::parse_value;

enum Expect {
    Exactly(Option<f64>),
    /// A hex float whose exact value is subnormal: finite, not checked to the bit.
    Finite,
    /// Well formed, but no exact reference: a value or a range error, never a panic.
    Any,
}

fn split_sign(s: &[u8]) -> (bool, &[u8]) {
    match s.first() {
        Some(b'+') => (false, &s[1..]),
        Some(b'-') => (true, &s[1..]),
        _ => (false, s),
    }
}

/// `digits [. digits] [e [+-] digits]`, at least one mantissa digit.
fn is_decimal(body: &[u8]) -> bool {
    let mut i = 0;
    let int = body.iter().take_while(|b| b.is_ascii_digit()).count();
    i += int;
    let mut frac = 0;
    if body.get(i) == Some(&b'.') {
        i += 1;
        frac = body[i..].iter().take_while(|b| b.is_ascii_digit()).count();
        i += frac;
    }
    if int + frac == 0 {
        return false;
    }
    if matches!(body.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(body.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        let exp = body[i..].iter().take_while(|b| b.is_ascii_digit()).count();
        if exp == 0 {
            return false;
        }
        i += exp;
    }
    i == body.len()
}

/// Go's `underscoreOK`, restated from its rules.
fn underscores_ok(s: &[u8]) -> bool {
    let (_, s) = split_sign(s);
    let (hex, rest, mut prev_digit) =
        if s.len() >= 2 && s[0] == b'0' && matches!(s[1] | 0x20, b'b' | b'o' | b'x') {
            (s[1] | 0x20 == b'x', &s[2..], true)
        } else {
            (false, s, false)
        };
    let mut prev_underscore = false;
    for &c in rest {
        let digit = c.is_ascii_digit() || (hex && c.is_ascii_hexdigit());
        if c == b'_' {
            if !prev_digit {
                return false;
            }
            prev_underscore = true;
            prev_digit = false;
        } else {
            if prev_underscore && !digit {
                return false;
            }
            prev_underscore = false;
            prev_digit = digit;
        }
    }
    !prev_underscore
}

/// `hexdigits [. hexdigits] p [+-] digits` after `0x`; `None` when not that shape.
fn hex_reference(negative: bool, body: &[u8]) -> Option<Expect> {
    let p = body.iter().position(|b| *b | 0x20 == b'p')?;
    let (mant, exp) = (&body[..p], &body[p + 1..]);
    let (int, frac) = match mant.iter().position(|b| *b == b'.') {
        Some(d) => (&mant[..d], &mant[d + 1..]),
        None => (mant, &mant[..0]),
    };
    if int.len() + frac.len() == 0 || !int.iter().chain(frac).all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let (exp_neg, exp_digits) = split_sign(exp);
    if exp_digits.is_empty() || !exp_digits.iter().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let digits: Vec<u8> = int.iter().chain(frac).copied().collect();
    let first = digits.iter().position(|d| *d != b'0');
    let Some(first) = first else {
        return Some(Expect::Exactly(Some(if negative { -0.0 } else { 0.0 })));
    };
    let significant = &digits[first..];
    if significant.len() > 15 {
        // Beyond the exact u64 mantissa: well formed, so a value or a range error.
        return Some(Expect::Any);
    }
    let m = significant.iter().fold(0u64, |m, d| {
        m * 16 + (*d as char).to_digit(16).unwrap_or(0) as u64
    });
    let e: i64 = exp_digits
        .iter()
        .fold(0i64, |e, d| (e * 10 + i64::from(d - b'0')).min(1 << 20));
    let e = if exp_neg { -e } else { e };
    // value = m * 2^(e - 4 * (hex digits after the point)), m < 2^60.
    let k = e - 4 * frac.len() as i64;
    let bits = 64 - m.leading_zeros() as i64; // m in [2^(bits-1), 2^bits)
    let top = k + bits - 1; // floor(log2(value))
    let sign = if negative { -1.0 } else { 1.0 };
    if top > 1023 {
        // May still round up to exactly 2^1024 only from above 1023; either way Go overflows.
        return Some(Expect::Exactly(None));
    }
    if top < -1022 {
        return Some(Expect::Finite);
    }
    // m as f64 rounds once (to 53 bits); scaling by 2^k is exact in the normal range, except
    // that rounding m up can carry into 2^1024.
    let mut v = m as f64;
    let mut k = k;
    while k > 0 {
        let step = k.min(600);
        v *= 2f64.powi(step as i32);
        k -= step;
    }
    while k < 0 {
        let step = (-k).min(600);
        v /= 2f64.powi(step as i32);
        k += step;
    }
    if v.is_infinite() {
        return Some(Expect::Exactly(None));
    }
    Some(Expect::Exactly(Some(sign * v)))
}

fn reference(s: &str) -> Expect {
    let b = s.as_bytes();
    let (negative, body) = split_sign(b);
    let signed = b.len() != body.len();
    if body.eq_ignore_ascii_case(b"inf") || body.eq_ignore_ascii_case(b"infinity") {
        return Expect::Exactly(Some(if negative {
            f64::NEG_INFINITY
        } else {
            f64::INFINITY
        }));
    }
    if body.eq_ignore_ascii_case(b"nan") {
        return Expect::Exactly((!signed).then_some(f64::NAN));
    }
    if b.contains(&b'_') && !underscores_ok(b) {
        return Expect::Exactly(None);
    }
    let clean: Vec<u8> = body.iter().copied().filter(|c| *c != b'_').collect();
    if clean.len() > 2 && clean[0] == b'0' && clean[1] | 0x20 == b'x' {
        return hex_reference(negative, &clean[2..]).unwrap_or(Expect::Exactly(None));
    }
    if !is_decimal(&clean) {
        return Expect::Exactly(None);
    }
    let text = format!(
        "{}{}",
        if negative { "-" } else { "" },
        String::from_utf8_lossy(&clean)
    );
    let Ok(v) = text.parse::<f64>() else {
        panic!("Rust rejects the decimal {text:?}");
    };
    Expect::Exactly(v.is_finite().then_some(v))
}

fn same(a: Option<f64>, b: Option<f64>) -> bool {
    match (a, b) {
        (Some(x), Some(y)) => x.to_bits() == y.to_bits() || (x.is_nan() && y.is_nan()),
        (None, None) => true,
        _ => false,
    }
}

fuzz_target!(|data: &[u8]| {
    let got = parse_value(data);
    let Ok(s) = std::str::from_utf8(data) else {
        assert!(got.is_none());
        return;
    };
    match reference(s) {
        Expect::Exactly(want) => assert!(same(got, want), "{s:?}: got {got:?}, want {want:?}"),
        Expect::Finite => assert!(got.is_some_and(f64::is_finite), "{s:?}: got {got:?}"),
        Expect::Any => assert!(got.is_none_or(|v| !v.is_nan()), "{s:?}: got {got:?}"),
    }
});
