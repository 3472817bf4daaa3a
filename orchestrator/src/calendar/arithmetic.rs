//! Counting days on a calendar. Everything here is a pure function of the
//! calendar and its arguments: no clock, no I/O, so deadlines can be
//! recomputed and replayed exactly.
//!
//! Counts exclude the start day (Civil Code Art. 201): the first day counted
//! is the day after the start. Every day the count has to classify must lie
//! in a covered year, otherwise the answer is
//! [`CalendarError::YearNotCovered`].

use chrono::{DateTime, Datelike, Days, NaiveDate, Offset, TimeZone, Utc, Weekday};
use chrono_tz::Tz;

use super::{Calendar, CalendarError, Year};

impl Calendar {
    /// Whether `date` is a working day: a make-up workday, or a Monday to
    /// Friday that is not a day off.
    pub fn is_working_day(&self, date: NaiveDate) -> Result<bool, CalendarError> {
        let year = self.covering(date)?;
        Ok(if year.make_up_workdays.contains_key(&date) {
            true
        } else if year.days_off.contains_key(&date) {
            false
        } else {
            !matches!(date.weekday(), Weekday::Sat | Weekday::Sun)
        })
    }

    /// The `n`-th working day after `start` (`start` itself is not counted);
    /// `start` when `n` is 0.
    pub fn add_working_days(&self, start: NaiveDate, n: u32) -> Result<NaiveDate, CalendarError> {
        self.count_working_days(start, n, Step::Forward)
    }

    /// The `n`-th working day before `start` (`start` itself is not counted);
    /// `start` when `n` is 0. For reminders due some working days before a
    /// deadline.
    pub fn sub_working_days(&self, start: NaiveDate, n: u32) -> Result<NaiveDate, CalendarError> {
        self.count_working_days(start, n, Step::Back)
    }

    /// `start` plus `n` calendar days. With `roll_forward`, a result that is
    /// not a working day moves to the next working day (Civil Code Art. 203:
    /// a period ending on a holiday ends on the day after it).
    ///
    /// Without `roll_forward` the calendar's data is not needed, so a result
    /// in an uncovered year is not an error.
    pub fn add_days(
        &self,
        start: NaiveDate,
        n: u32,
        roll_forward: bool,
    ) -> Result<NaiveDate, CalendarError> {
        let mut date = start
            .checked_add_days(Days::new(u64::from(n)))
            .ok_or(CalendarError::OutOfRange { start, days: n })?;
        if roll_forward {
            while !self.is_working_day(date)? {
                date = step(date, Step::Forward)?;
            }
        }
        Ok(date)
    }

    /// The number of working days after `from` up to and including `to`, so
    /// that `working_days_between(d, add_working_days(d, n)) == n`; negative
    /// when `to` is before `from`.
    pub fn working_days_between(
        &self,
        from: NaiveDate,
        to: NaiveDate,
    ) -> Result<i64, CalendarError> {
        let (low, high, sign) = if from <= to {
            (from, to, 1)
        } else {
            (to, from, -1)
        };
        let mut count = 0;
        let mut date = low;
        while date < high {
            date = step(date, Step::Forward)?;
            if self.is_working_day(date)? {
                count += 1;
            }
        }
        Ok(sign * count)
    }

    /// The instant `date` ends in the calendar's time zone: the start of the
    /// next local day. A deadline falls due at the end of its last day.
    pub fn end_of_day(&self, date: NaiveDate) -> DateTime<Utc> {
        // Only `NaiveDate::MAX` has no successor; no calendar covers it.
        let next = date.succ_opt().unwrap_or(date);
        start_of_day(self.timezone, next)
    }

    /// The data of the year `date` is in, or the error naming that year.
    fn covering(&self, date: NaiveDate) -> Result<&Year, CalendarError> {
        self.years
            .get(&date.year())
            .ok_or_else(|| CalendarError::YearNotCovered {
                calendar: self.name.clone(),
                year: date.year(),
            })
    }

    fn count_working_days(
        &self,
        start: NaiveDate,
        n: u32,
        direction: Step,
    ) -> Result<NaiveDate, CalendarError> {
        let mut date = start;
        let mut left = n;
        // Ends: each step either counts a day or moves towards the edge of
        // the covered years, where `is_working_day` fails.
        while left > 0 {
            date = step(date, direction)?;
            if self.is_working_day(date)? {
                left -= 1;
            }
        }
        Ok(date)
    }
}

#[derive(Debug, Clone, Copy)]
enum Step {
    Forward,
    Back,
}

fn step(date: NaiveDate, direction: Step) -> Result<NaiveDate, CalendarError> {
    let next = match direction {
        Step::Forward => date.succ_opt(),
        Step::Back => date.pred_opt(),
    };
    next.ok_or(CalendarError::OutOfRange {
        start: date,
        days: 1,
    })
}

/// The first instant of `date` in `tz`. Where a clock change skips local
/// midnight, the day starts when the clock jumps, computed with the offset
/// in force before the change; where midnight happens twice, at the first.
pub(crate) fn start_of_day(tz: Tz, date: NaiveDate) -> DateTime<Utc> {
    let midnight = date.and_time(chrono::NaiveTime::MIN);
    match tz.from_local_datetime(&midnight) {
        chrono::LocalResult::Single(t) => t.with_timezone(&Utc),
        chrono::LocalResult::Ambiguous(first, _) => first.with_timezone(&Utc),
        chrono::LocalResult::None => {
            let before = midnight
                .checked_sub_days(Days::new(1))
                .unwrap_or(midnight)
                .and_utc();
            let offset = tz.offset_from_utc_datetime(&before.naive_utc()).fix();
            Utc.from_utc_datetime(&(midnight - offset))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::calendar::tests::cn_mainland;
    use proptest::prelude::*;

    fn d(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    #[test]
    fn worked_examples_of_the_domain_readme() {
        let cal = cn_mainland();
        for (accepted, calendar_days, working_days) in [
            ("2026-02-10", "2026-02-25", "2026-03-09"),
            ("2025-09-26", "2025-10-11", "2025-10-23"),
            ("2026-09-25", "2026-10-10", "2026-10-22"),
        ] {
            assert_eq!(
                cal.add_days(d(accepted), 15, false).unwrap(),
                d(calendar_days),
                "{accepted} + 15 calendar days"
            );
            assert_eq!(
                cal.add_days(d(accepted), 15, true).unwrap(),
                d(calendar_days),
                "{accepted} + 15 calendar days, rolled forward"
            );
            assert_eq!(
                cal.add_working_days(d(accepted), 15).unwrap(),
                d(working_days),
                "{accepted} + 15 working days"
            );
            assert_eq!(
                cal.working_days_between(d(accepted), d(working_days))
                    .unwrap(),
                15
            );
        }
    }

    #[test]
    fn make_up_saturdays_and_sundays_are_working_days() {
        let cal = cn_mainland();
        for day in ["2025-01-26", "2025-10-11", "2026-02-14", "2026-09-20"] {
            assert!(cal.is_working_day(d(day)).unwrap(), "{day}");
        }
        // An ordinary weekend is not.
        assert!(!cal.is_working_day(d("2025-10-18")).unwrap());
        assert!(!cal.is_working_day(d("2026-03-01")).unwrap());
    }

    #[test]
    fn holiday_weekdays_are_not_working_days() {
        let cal = cn_mainland();
        for day in ["2025-01-01", "2025-10-08", "2026-02-23", "2026-06-19"] {
            assert!(!cal.is_working_day(d(day)).unwrap(), "{day}");
        }
        assert!(cal.is_working_day(d("2025-10-09")).unwrap());
    }

    #[test]
    fn roll_forward_moves_a_day_off_to_the_next_working_day() {
        let cal = cn_mainland();
        // 2025-09-20 + 11 = 2025-10-01, National Day; the holiday runs to
        // the 8th, so the deadline is the 9th.
        assert_eq!(
            cal.add_days(d("2025-09-20"), 11, false).unwrap(),
            d("2025-10-01")
        );
        assert_eq!(
            cal.add_days(d("2025-09-20"), 11, true).unwrap(),
            d("2025-10-09")
        );
        // An ordinary Saturday rolls to Monday.
        assert_eq!(
            cal.add_days(d("2025-03-01"), 7, true).unwrap(),
            d("2025-03-10")
        );
        // A working day stays.
        assert_eq!(
            cal.add_days(d("2025-03-01"), 2, true).unwrap(),
            d("2025-03-03")
        );
    }

    #[test]
    fn counting_into_an_uncovered_year_names_the_calendar_and_year() {
        let cal = cn_mainland();
        let err = cal.add_working_days(d("2026-12-20"), 15).unwrap_err();
        assert!(
            matches!(&err, CalendarError::YearNotCovered { calendar, year: 2027 } if calendar == "cn-mainland"),
            "{err:?}"
        );
        let message = err.to_string();
        assert!(
            message.contains("`cn-mainland`") && message.contains("2027"),
            "{message}"
        );

        assert!(matches!(
            cal.is_working_day(d("2027-01-04")),
            Err(CalendarError::YearNotCovered { year: 2027, .. })
        ));
        assert!(matches!(
            cal.add_days(d("2026-12-25"), 15, true),
            Err(CalendarError::YearNotCovered { year: 2027, .. })
        ));
        assert!(matches!(
            cal.sub_working_days(d("2025-01-03"), 5),
            Err(CalendarError::YearNotCovered { year: 2024, .. })
        ));
        assert!(matches!(
            cal.working_days_between(d("2026-12-01"), d("2027-01-10")),
            Err(CalendarError::YearNotCovered { year: 2027, .. })
        ));
        // Calendar days without roll-forward need no holiday data.
        assert_eq!(
            cal.add_days(d("2026-12-25"), 15, false).unwrap(),
            d("2027-01-09")
        );
    }

    #[test]
    fn counting_up_to_the_end_of_the_last_covered_year_works() {
        let cal = cn_mainland();
        // 2026-12-31 is a Thursday and a working day.
        assert_eq!(
            cal.add_working_days(d("2026-12-30"), 1).unwrap(),
            d("2026-12-31")
        );
        // Counting starts the day after `start`, so a start in an
        // uncovered year is fine.
        assert_eq!(
            cal.add_working_days(d("2024-12-31"), 1).unwrap(),
            d("2025-01-02")
        );
    }

    #[test]
    fn sub_working_days_counts_backwards_over_holidays() {
        let cal = cn_mainland();
        // Three working days before 2025-10-09: Sep 30, Sep 29, Sep 28
        // (a make-up Sunday).
        assert_eq!(
            cal.sub_working_days(d("2025-10-09"), 3).unwrap(),
            d("2025-09-28")
        );
        assert_eq!(
            cal.working_days_between(d("2025-10-09"), d("2025-09-28"))
                .unwrap(),
            -3
        );
    }

    #[test]
    fn end_of_day_is_the_next_local_midnight() {
        let cal = cn_mainland();
        // Asia/Shanghai is UTC+8: 2026-03-10 00:00 local is 03-09 16:00 UTC.
        let end = cal.end_of_day(d("2026-03-09"));
        assert_eq!(end.to_rfc3339(), "2026-03-09T16:00:00+00:00");
    }

    #[test]
    fn a_skipped_midnight_starts_the_day_when_the_clock_jumps() {
        // America/Havana moved clocks from 00:00 to 01:00 on 2023-03-12.
        let start = start_of_day(chrono_tz::America::Havana, d("2023-03-12"));
        assert_eq!(start.to_rfc3339(), "2023-03-12T05:00:00+00:00");
        // On the day after, midnight exists once.
        let next = start_of_day(chrono_tz::America::Havana, d("2023-03-13"));
        assert_eq!(next.to_rfc3339(), "2023-03-13T04:00:00+00:00");
    }

    fn date_in(first: &str, days: u32) -> impl Strategy<Value = NaiveDate> {
        let first = d(first);
        (0..days).prop_map(move |i| first + Days::new(u64::from(i)))
    }

    proptest! {
        // Starts up to mid-2026 and at most 120 working days keep every
        // count inside 2025-2026.
        #[test]
        fn adding_working_days_is_monotonic_in_n(
            start in date_in("2025-01-01", 546), n in 0u32..60, extra in 1u32..60,
        ) {
            let cal = cn_mainland();
            let a = cal.add_working_days(start, n).unwrap();
            let b = cal.add_working_days(start, n + extra).unwrap();
            prop_assert!(a < b);
        }

        #[test]
        fn adding_working_days_lands_on_a_working_day(
            start in date_in("2025-01-01", 546), n in 1u32..120,
        ) {
            let cal = cn_mainland();
            let end = cal.add_working_days(start, n).unwrap();
            prop_assert!(cal.is_working_day(end).unwrap());
            prop_assert_eq!(cal.working_days_between(start, end).unwrap(), i64::from(n));
        }

        #[test]
        fn adding_working_days_composes(
            start in date_in("2025-01-01", 546), n in 0u32..60, m in 0u32..60,
        ) {
            let cal = cn_mainland();
            let stepwise = cal.add_working_days(cal.add_working_days(start, n).unwrap(), m).unwrap();
            prop_assert_eq!(stepwise, cal.add_working_days(start, n + m).unwrap());
        }

        #[test]
        fn subtracting_undoes_adding_from_a_working_day(
            start in date_in("2025-01-01", 546), n in 0u32..60,
        ) {
            let cal = cn_mainland();
            let begin = cal.add_days(start, 0, true).unwrap();
            let end = cal.add_working_days(begin, n).unwrap();
            prop_assert_eq!(cal.sub_working_days(end, n).unwrap(), begin);
        }

        #[test]
        fn rolling_forward_finds_the_first_working_day(
            start in date_in("2025-01-01", 546), n in 0u32..120,
        ) {
            let cal = cn_mainland();
            let plain = cal.add_days(start, n, false).unwrap();
            let rolled = cal.add_days(start, n, true).unwrap();
            prop_assert!(rolled >= plain);
            prop_assert!(cal.is_working_day(rolled).unwrap());
            for day in plain.iter_days().take_while(|day| *day < rolled) {
                prop_assert!(!cal.is_working_day(day).unwrap());
            }
        }
    }
}
