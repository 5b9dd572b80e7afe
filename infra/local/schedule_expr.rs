//! EventBridge schedule expressions, as a rule's `ScheduleExpression` takes them (and so SAM's
//! `Type: Schedule` events): `rate(N unit)` and `cron(minutes hours day-of-month month
//! day-of-week year)`, always in UTC.
//!
//! What EventBridge accepts, the twin accepts, except the `L`, `W` and `#` wildcards, which it
//! refuses with a clear error rather than run them wrongly. What EventBridge refuses, the twin
//! refuses too, so a template that runs here also deploys: `rate(1 minutes)` and `rate(5 minute)`
//! (a value of 1 takes the singular unit, any other the plural), a cron with both or neither of
//! day-of-month and day-of-week set to `?`, and `/` in day-of-week.

use chrono::{DateTime, Datelike, NaiveDate, NaiveDateTime, TimeDelta, Timelike, Utc};
use std::collections::BTreeSet;

/// A parsed schedule expression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expression {
    /// `rate(N minute(s)|hour(s)|day(s))`: every `secs` seconds.
    Rate {
        secs: u64,
    },
    Cron(Cron),
}

/// A cron expression's allowed values per field. Day-of-month and day-of-week are `None` for `?`
/// (exactly one of them is).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cron {
    minutes: Vec<u32>,
    hours: Vec<u32>,
    days_of_month: Option<Vec<u32>>,
    months: Vec<u32>,
    /// 1 = Sunday … 7 = Saturday, as EventBridge numbers them.
    days_of_week: Option<Vec<u32>>,
    years: Vec<u32>,
}

/// One field of a cron expression.
struct FieldDef {
    name: &'static str,
    min: u32,
    max: u32,
    /// Names for `min`, `min + 1`, ….
    names: &'static [&'static str],
    question_allowed: bool,
    step_allowed: bool,
    /// EventBridge's wildcards this field takes that the twin refuses (e.g. `L` and `W`).
    unsupported: &'static [char],
}

const MONTHS: &[&str] = &[
    "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
];
const DAYS: &[&str] = &["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];

const FIELDS: [FieldDef; 6] = [
    FieldDef {
        name: "minutes",
        min: 0,
        max: 59,
        names: &[],
        question_allowed: false,
        step_allowed: true,
        unsupported: &[],
    },
    FieldDef {
        name: "hours",
        min: 0,
        max: 23,
        names: &[],
        question_allowed: false,
        step_allowed: true,
        unsupported: &[],
    },
    FieldDef {
        name: "day-of-month",
        min: 1,
        max: 31,
        names: &[],
        question_allowed: true,
        step_allowed: true,
        unsupported: &['L', 'W'],
    },
    FieldDef {
        name: "month",
        min: 1,
        max: 12,
        names: MONTHS,
        question_allowed: false,
        step_allowed: true,
        unsupported: &[],
    },
    FieldDef {
        name: "day-of-week",
        min: 1,
        max: 7,
        names: DAYS,
        question_allowed: true,
        step_allowed: false,
        // No day name has an L in it, so any L is the wildcard.
        unsupported: &['L', '#'],
    },
    FieldDef {
        name: "year",
        min: 1970,
        max: 2199,
        names: &[],
        question_allowed: false,
        step_allowed: true,
        unsupported: &[],
    },
];

impl Expression {
    /// Parse `rate(...)` or `cron(...)`; the error says what is wrong, for a template error.
    pub fn parse(text: &str) -> Result<Self, String> {
        let t = text.trim();
        if let Some(inner) = t.strip_prefix("rate(").and_then(|r| r.strip_suffix(')')) {
            return parse_rate(inner).map_err(|e| format!("{t:?}: {e}"));
        }
        if let Some(inner) = t.strip_prefix("cron(").and_then(|r| r.strip_suffix(')')) {
            return parse_cron(inner)
                .map(Expression::Cron)
                .map_err(|e| format!("{t:?}: {e}"));
        }
        Err(format!(
            "{t:?} is not an EventBridge schedule expression: expected rate(value unit) or \
             cron(minutes hours day-of-month month day-of-week year)"
        ))
    }

    /// The first fire strictly after `after`. A rate fires at `origin` + k × period (k ≥ 1:
    /// never at `origin` itself, as a new rule first fires one period after its creation); a
    /// cron at its next matching minute. None: it never fires again (a cron whose years are past).
    pub fn next_after(&self, origin: DateTime<Utc>, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match self {
            Expression::Rate { secs } => {
                // In nanoseconds, so that an origin's fraction of a second is kept.
                const NS: i128 = 1_000_000_000;
                let ns = |t: DateTime<Utc>| {
                    i128::from(t.timestamp()) * NS + i128::from(t.timestamp_subsec_nanos())
                };
                let period = i128::from(*secs) * NS;
                let (o, a) = (ns(origin), ns(after));
                // Whole periods done by `after` (a fire exactly at `after` is done), then the next.
                let k = ((a - o).div_euclid(period) + 1).max(1);
                let at = o.checked_add(k.checked_mul(period)?)?;
                DateTime::from_timestamp(
                    i64::try_from(at.div_euclid(NS)).ok()?,
                    u32::try_from(at.rem_euclid(NS)).ok()?,
                )
            }
            Expression::Cron(c) => c.next_after(after),
        }
    }
}

fn parse_rate(inner: &str) -> Result<Expression, String> {
    let parts: Vec<&str> = inner.split_whitespace().collect();
    let [value, unit] = parts[..] else {
        return Err("a rate takes a value and a unit, e.g. rate(5 minutes)".into());
    };
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "the rate's value {value:?} is not a positive whole number"
        ));
    }
    let n: u64 = value
        .parse()
        .map_err(|_| format!("the rate's value {value} is too large"))?;
    if n == 0 {
        return Err("the rate's value must be at least 1".into());
    }
    let (singular, unit_secs) = match unit {
        "minute" | "minutes" => ("minute", 60),
        "hour" | "hours" => ("hour", 3600),
        "day" | "days" => ("day", 86_400),
        other => return Err(format!("unknown unit {other:?} (minute(s), hour(s) or day(s))")),
    };
    let plural = format!("{singular}s");
    if n == 1 && unit != singular {
        return Err(format!(
            "a value of 1 takes the singular unit: rate(1 {singular})"
        ));
    }
    if n > 1 && unit == singular {
        return Err(format!(
            "a value above 1 takes the plural unit: rate({n} {plural})"
        ));
    }
    let secs = n
        .checked_mul(unit_secs)
        .filter(|s| i64::try_from(*s).is_ok())
        .ok_or_else(|| format!("the rate's value {n} is too large"))?;
    Ok(Expression::Rate { secs })
}

fn parse_cron(inner: &str) -> Result<Cron, String> {
    let parts: Vec<&str> = inner.split_whitespace().collect();
    if parts.len() != 6 {
        return Err(format!(
            "a cron expression has six fields (minutes hours day-of-month month day-of-week year), \
             this one {}",
            parts.len()
        ));
    }
    let mut fields = Vec::with_capacity(6);
    for (def, text) in FIELDS.iter().zip(&parts) {
        fields.push(parse_field(def, text).map_err(|e| format!("{}: {e}", def.name))?);
    }
    match (&fields[2], &fields[4]) {
        (None, None) => {
            return Err("day-of-month and day-of-week are both ?: one of them needs a value or *".into())
        }
        (Some(_), Some(_)) => {
            return Err(
                "one of day-of-month and day-of-week must be ? (EventBridge does not take both)".into(),
            )
        }
        _ => {}
    }
    // Only the day fields can be ? (None).
    let take = |i: usize| fields[i].clone().unwrap_or_default();
    Ok(Cron {
        minutes: take(0),
        hours: take(1),
        days_of_month: fields[2].clone(),
        months: take(3),
        days_of_week: fields[4].clone(),
        years: take(5),
    })
}

/// A field's allowed values, sorted; None for `?`.
fn parse_field(def: &FieldDef, text: &str) -> Result<Option<Vec<u32>>, String> {
    if text == "?" {
        return if def.question_allowed {
            Ok(None)
        } else {
            Err("? is only allowed in day-of-month or day-of-week".into())
        };
    }
    let upper = text.to_ascii_uppercase();
    if let Some(c) = def.unsupported.iter().find(|c| upper.contains(**c)) {
        let list: Vec<String> = def.unsupported.iter().map(|c| c.to_string()).collect();
        return Err(format!(
            "{text:?}: the {c} wildcard is not supported by the local twin (it refuses {} in {}; \
             EventBridge takes them)",
            list.join(", "),
            def.name
        ));
    }
    let mut set = BTreeSet::new();
    for item in upper.split(',') {
        if item.is_empty() {
            return Err(format!("{text:?} has an empty list item"));
        }
        let (base, step) = match item.split_once('/') {
            Some((b, s)) => {
                if !def.step_allowed {
                    return Err(format!(
                        "{text:?}: / is not allowed in {} (EventBridge takes , - * ? L # there)",
                        def.name
                    ));
                }
                let step = number(s).filter(|n| *n >= 1).ok_or_else(|| {
                    format!("{item:?}: the increment {s:?} is not a whole number of at least 1")
                })?;
                (b, Some(step))
            }
            None => (item, None),
        };
        let (from, to) = if base == "*" {
            (def.min, def.max)
        } else if let Some((a, b)) = base.split_once('-') {
            let (a, b) = (value(def, a)?, value(def, b)?);
            if a > b {
                return Err(format!(
                    "{item:?}: the range runs backwards (the twin takes a-b with a ≤ b)"
                ));
            }
            (a, b)
        } else {
            let v = value(def, base)?;
            // `a/n`: from a to the field's end, every n.
            (v, if step.is_some() { def.max } else { v })
        };
        let step = step.unwrap_or(1) as usize;
        set.extend((from..=to).step_by(step));
    }
    Ok(Some(set.into_iter().collect()))
}

fn number(s: &str) -> Option<u32> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// A single value: a number within the field's range, or a month or day name.
fn value(def: &FieldDef, s: &str) -> Result<u32, String> {
    let v = match number(s) {
        Some(n) => n,
        None => match def.names.iter().position(|n| *n == s) {
            Some(i) => def.min + i as u32,
            None if def.names.is_empty() => return Err(format!("{s:?} is not a number")),
            None => return Err(format!("{s:?} is not a number or one of {}", def.names.join(" "))),
        },
    };
    if !(def.min..=def.max).contains(&v) {
        return Err(format!("{v} is not within {}-{}", def.min, def.max));
    }
    Ok(v)
}

fn has(set: &[u32], v: u32) -> bool {
    set.binary_search(&v).is_ok()
}

fn midnight(d: NaiveDate) -> NaiveDateTime {
    d.and_time(chrono::NaiveTime::MIN)
}

impl Cron {
    fn day_matches(&self, d: NaiveDate) -> bool {
        if let Some(days) = &self.days_of_month {
            return has(days, d.day());
        }
        match &self.days_of_week {
            Some(days) => has(days, d.weekday().num_days_from_sunday() + 1),
            None => false,
        }
    }

    /// The first matching minute strictly after `t` (None: none before the end of year 2199,
    /// or of its last year).
    pub fn next_after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let t = t.naive_utc();
        let mut c = midnight(t.date()).checked_add_signed(TimeDelta::minutes(
            i64::from(t.hour()) * 60 + i64::from(t.minute()) + 1,
        ))?;
        loop {
            let year = u32::try_from(c.year()).unwrap_or(0);
            if !has(&self.years, year) {
                let next = *self.years.iter().find(|y| **y > year)?;
                c = midnight(NaiveDate::from_ymd_opt(next as i32, 1, 1)?);
                continue;
            }
            if !has(&self.months, c.month()) {
                let (y, m) = if c.month() == 12 {
                    (c.year() + 1, 1)
                } else {
                    (c.year(), c.month() + 1)
                };
                c = midnight(NaiveDate::from_ymd_opt(y, m, 1)?);
                continue;
            }
            if !self.day_matches(c.date()) {
                c = midnight(c.date().succ_opt()?);
                continue;
            }
            if !has(&self.hours, c.hour()) {
                c = c.with_minute(0)?.checked_add_signed(TimeDelta::hours(1))?;
                continue;
            }
            if !has(&self.minutes, c.minute()) {
                c = c.checked_add_signed(TimeDelta::minutes(1))?;
                continue;
            }
            return Some(c.and_utc());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).expect("time").with_timezone(&Utc)
    }

    fn cron(s: &str) -> Expression {
        Expression::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    /// The next `n` fires after `from`.
    fn fires(e: &Expression, from: &str, n: usize) -> Vec<String> {
        let origin = at(from);
        let mut t = origin;
        let mut out = Vec::new();
        for _ in 0..n {
            t = e.next_after(origin, t).expect("a next fire");
            out.push(t.format("%Y-%m-%dT%H:%M:%SZ").to_string());
        }
        out
    }

    #[test]
    fn rates_parse() {
        for (text, secs) in [
            ("rate(1 minute)", 60),
            ("rate(5 minutes)", 300),
            ("rate(1 hour)", 3600),
            ("rate(12 hours)", 43_200),
            ("rate(1 day)", 86_400),
            ("rate(7 days)", 604_800),
            (" rate(2  minutes) ", 120),
        ] {
            assert_eq!(Expression::parse(text), Ok(Expression::Rate { secs }), "{text}");
        }
    }

    #[test]
    fn bad_rates_are_refused() {
        for (text, why) in [
            ("rate(1 minutes)", "singular"),
            ("rate(1 hours)", "singular"),
            ("rate(5 minute)", "plural"),
            ("rate(2 day)", "plural"),
            ("rate(0 minutes)", "at least 1"),
            ("rate(-1 minutes)", "positive whole number"),
            ("rate(1.5 hours)", "positive whole number"),
            ("rate(5 seconds)", "unknown unit"),
            ("rate(5)", "a value and a unit"),
            ("rate(99999999999999999999 days)", "too large"),
            ("rate(999999999999999 days)", "too large"),
            ("every(5 minutes)", "not an EventBridge schedule expression"),
            (
                "at(2026-01-01T00:00:00)",
                "not an EventBridge schedule expression",
            ),
            ("rate(5 minutes", "not an EventBridge schedule expression"),
        ] {
            let e = Expression::parse(text).expect_err(text);
            assert!(e.contains(why), "{text}: {e}");
        }
    }

    #[test]
    fn cron_fields_parse() {
        let Expression::Cron(c) = cron("cron(0,30 8-10 ? JAN,MAR-APR MON-FRI *)") else {
            panic!("not a cron");
        };
        assert_eq!(c.minutes, vec![0, 30]);
        assert_eq!(c.hours, vec![8, 9, 10]);
        assert_eq!(c.days_of_month, None);
        assert_eq!(c.months, vec![1, 3, 4]);
        assert_eq!(c.days_of_week, Some(vec![2, 3, 4, 5, 6]));
        assert_eq!(c.years.len(), 230);
        let Expression::Cron(c) = cron("cron(*/15 1/6 1-20/5 */4 ? 2027-2030/2)") else {
            panic!("not a cron");
        };
        assert_eq!(c.minutes, vec![0, 15, 30, 45]);
        assert_eq!(c.hours, vec![1, 7, 13, 19]);
        assert_eq!(c.days_of_month, Some(vec![1, 6, 11, 16]));
        assert_eq!(c.months, vec![1, 5, 9]);
        assert_eq!(c.days_of_week, None);
        assert_eq!(c.years, vec![2027, 2029]);
        // Names in any case, numbers and names mixed; SUN is 1 and SAT 7.
        let Expression::Cron(c) = cron("cron(0 0 ? dec sun,7 *)") else {
            panic!("not a cron");
        };
        assert_eq!(c.months, vec![12]);
        assert_eq!(c.days_of_week, Some(vec![1, 7]));
    }

    #[test]
    fn bad_crons_are_refused() {
        for (text, why) in [
            ("cron(0 12 * * ? )", "six fields"),
            ("cron(0 12 * * ? * *)", "six fields"),
            (
                "cron(0 12 * * * *)",
                "one of day-of-month and day-of-week must be ?",
            ),
            (
                "cron(0 12 1 * MON *)",
                "one of day-of-month and day-of-week must be ?",
            ),
            ("cron(0 12 ? * ? *)", "both ?"),
            ("cron(? 12 * * ? *)", "minutes: ? is only allowed"),
            ("cron(60 12 * * ? *)", "minutes: 60 is not within 0-59"),
            ("cron(0 24 * * ? *)", "hours: 24 is not within 0-23"),
            ("cron(0 0 0 * ? *)", "day-of-month: 0 is not within 1-31"),
            ("cron(0 0 32 * ? *)", "day-of-month: 32"),
            ("cron(0 0 1 13 ? *)", "month: 13"),
            (
                "cron(0 0 1 JANUARY ? *)",
                "month: \"JANUARY\" is not a number or one of JAN",
            ),
            ("cron(0 0 ? * 0 *)", "day-of-week: 0 is not within 1-7"),
            ("cron(0 0 ? * 8 *)", "day-of-week: 8"),
            ("cron(0 0 1 * ? 1969)", "year: 1969 is not within 1970-2199"),
            ("cron(0 0 1 * ? 2200)", "year: 2200"),
            ("cron(10-5 0 1 * ? *)", "backwards"),
            ("cron(0 0 ? * FRI-MON *)", "backwards"),
            ("cron(*/0 0 1 * ? *)", "increment"),
            ("cron(*/x 0 1 * ? *)", "increment"),
            ("cron(0,,5 0 1 * ? *)", "empty list item"),
            ("cron(a 0 1 * ? *)", "minutes: \"A\" is not a number"),
            ("cron(0 0 ? * MON/2 *)", "/ is not allowed in day-of-week"),
            // EventBridge's L, W and # are refused, clearly.
            (
                "cron(0 0 L * ? *)",
                "the L wildcard is not supported by the local twin",
            ),
            ("cron(0 0 15W * ? *)", "the W wildcard is not supported"),
            ("cron(0 0 LW * ? *)", "not supported"),
            ("cron(0 0 ? * 6L *)", "the L wildcard is not supported"),
            ("cron(0 0 ? * 3#2 *)", "the # wildcard is not supported"),
        ] {
            let e = Expression::parse(text).expect_err(text);
            assert!(e.contains(why), "{text}: {e}");
        }
        // JUL has an L in it, and is a month.
        cron("cron(0 0 1 JUL ? *)");
    }

    #[test]
    fn a_rate_fires_a_period_after_its_origin_and_every_period_after() {
        let e = cron("rate(1 hour)");
        assert_eq!(
            fires(&e, "2026-03-01T10:15:30Z", 3),
            [
                "2026-03-01T11:15:30Z",
                "2026-03-01T12:15:30Z",
                "2026-03-01T13:15:30Z"
            ]
        );
        let origin = at("2026-03-01T10:15:30Z");
        // Exactly on a fire: the next one. Missed fires are not made up.
        assert_eq!(
            e.next_after(origin, at("2026-03-01T11:15:30Z")),
            Some(at("2026-03-01T12:15:30Z"))
        );
        assert_eq!(
            e.next_after(origin, at("2026-03-02T00:00:00Z")),
            Some(at("2026-03-02T00:15:30Z"))
        );
        // Before its origin: still one period after it.
        assert_eq!(
            e.next_after(origin, at("2026-01-01T00:00:00Z")),
            Some(at("2026-03-01T11:15:30Z"))
        );
        let origin = at("2026-03-01T10:15:30.900Z");
        let e = cron("rate(1 minute)");
        assert_eq!(
            e.next_after(origin, at("2026-03-01T10:16:30.950Z")),
            Some(at("2026-03-01T10:17:30.900Z"))
        );
        assert_eq!(
            e.next_after(origin, at("2026-03-01T10:16:30.850Z")),
            Some(at("2026-03-01T10:16:30.900Z"))
        );
    }

    #[test]
    fn cron_next_fire() {
        // Every day at 06:00 UTC: later today, or tomorrow once it has passed.
        let daily = cron("cron(0 6 * * ? *)");
        assert_eq!(
            fires(&daily, "2026-03-01T05:59:59Z", 2),
            ["2026-03-01T06:00:00Z", "2026-03-02T06:00:00Z"]
        );
        assert_eq!(fires(&daily, "2026-03-01T06:00:00Z", 1), ["2026-03-02T06:00:00Z"]);
        // Strictly after, to the minute: 06:00:30 is past 06:00's fire.
        assert_eq!(fires(&daily, "2026-03-01T06:00:30Z", 1), ["2026-03-02T06:00:00Z"]);
        // Every 15 minutes through the hour boundary.
        assert_eq!(
            fires(&cron("cron(*/15 * * * ? *)"), "2026-03-01T10:40:00Z", 3),
            [
                "2026-03-01T10:45:00Z",
                "2026-03-01T11:00:00Z",
                "2026-03-01T11:15:00Z"
            ]
        );
        // Weekdays at 18:00: Friday 2026-03-06 → Monday 2026-03-09.
        assert_eq!(
            fires(&cron("cron(0 18 ? * MON-FRI *)"), "2026-03-06T18:00:00Z", 2),
            ["2026-03-09T18:00:00Z", "2026-03-10T18:00:00Z"]
        );
        // 1 = Sunday: 2026-03-01 is a Sunday.
        assert_eq!(
            fires(&cron("cron(30 9 ? * 1 *)"), "2026-02-27T00:00:00Z", 2),
            ["2026-03-01T09:30:00Z", "2026-03-08T09:30:00Z"]
        );
        // Day of month 31 skips the months without one.
        assert_eq!(
            fires(&cron("cron(0 0 31 * ? *)"), "2026-01-31T00:00:00Z", 3),
            [
                "2026-03-31T00:00:00Z",
                "2026-05-31T00:00:00Z",
                "2026-07-31T00:00:00Z"
            ]
        );
        // 29 February: the next leap year.
        assert_eq!(
            fires(&cron("cron(0 12 29 FEB ? *)"), "2026-03-01T00:00:00Z", 2),
            ["2028-02-29T12:00:00Z", "2032-02-29T12:00:00Z"]
        );
        // Month and day of week together: Saturdays of December only.
        assert_eq!(
            fires(&cron("cron(0 8 ? DEC SAT *)"), "2026-11-30T00:00:00Z", 5),
            [
                "2026-12-05T08:00:00Z",
                "2026-12-12T08:00:00Z",
                "2026-12-19T08:00:00Z",
                "2026-12-26T08:00:00Z",
                "2027-12-04T08:00:00Z"
            ]
        );
    }

    #[test]
    fn cron_rolls_over_the_year_and_stops_after_its_last() {
        assert_eq!(
            fires(&cron("cron(59 23 31 12 ? *)"), "2026-12-31T23:59:00Z", 1),
            ["2027-12-31T23:59:00Z"]
        );
        assert_eq!(
            fires(&cron("cron(0 0 1 JAN ? *)"), "2026-12-31T23:59:59.999Z", 1),
            ["2027-01-01T00:00:00Z"]
        );
        let once = cron("cron(0 0 1 1 ? 2027)");
        let origin = at("2026-06-01T00:00:00Z");
        assert_eq!(once.next_after(origin, origin), Some(at("2027-01-01T00:00:00Z")));
        assert_eq!(once.next_after(origin, at("2027-01-01T00:00:00Z")), None);
        // 30 February never comes.
        assert_eq!(cron("cron(0 0 30 2 ? *)").next_after(origin, origin), None);
        // The last possible fire.
        let last = cron("cron(59 23 31 12 ? 2199)");
        assert_eq!(last.next_after(origin, origin), Some(at("2199-12-31T23:59:00Z")));
        assert_eq!(last.next_after(origin, at("2199-12-31T23:59:00Z")), None);
    }
}
