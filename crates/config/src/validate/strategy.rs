//! Validation of a service's deploy strategies: the rolling bounds
//! (`max_surge`, `max_unavailable`), `[service.NAME.blue_green]` and
//! `[service.NAME.canary]`. Every strategy is validated whatever `strategy`
//! names, since `baton deploy --strategy` may pick another.

use std::collections::BTreeSet;

use toml::Spanned;

use super::pool::is_request_path;
use super::{Ctx, toml_default};
use crate::raw::{RawBlueGreen, RawCanary, RawService};
use crate::schema::{BLUE_GREEN, CANARY, SERVICE};
use crate::types::{BlueGreen, Canary, Rolling};

pub(super) fn rolling(ctx: &mut Ctx<'_, '_>, raw: &RawService) -> Option<Rolling> {
    let max_surge = ctx.int(&SERVICE, "max_surge", &raw.max_surge, 0..=1024);
    let max_unavailable = ctx.int(&SERVICE, "max_unavailable", &raw.max_unavailable, 0..=1024);
    if (max_surge, max_unavailable) == (Some(0), Some(0)) {
        // At least `max_surge` was given (its default is 1): report at the
        // later of the two.
        let span = [&raw.max_surge, &raw.max_unavailable]
            .into_iter()
            .flatten()
            .map(Spanned::span)
            .max_by_key(|span| span.start)
            .unwrap_or_default();
        let message =
            "`max_surge` and `max_unavailable` are both 0, so no instance could ever be replaced";
        ctx.error(span, message);
        return None;
    }
    Some(Rolling {
        max_surge: u32::try_from(max_surge?).ok()?,
        max_unavailable: u32::try_from(max_unavailable?).ok()?,
    })
}

pub(super) fn blue_green(
    ctx: &mut Ctx<'_, '_>,
    raw: Option<&Spanned<RawBlueGreen>>,
) -> Option<BlueGreen> {
    let default = RawBlueGreen::default();
    let raw = raw.map_or(&default, Spanned::get_ref);
    let smoke = match &raw.smoke {
        Some(list) => {
            let mut seen = BTreeSet::new();
            let mut ok = true;
            for path in list.get_ref() {
                let text = path.get_ref();
                if !is_request_path(text) {
                    let message =
                        format!("smoke check {text:?} must be a path starting with \"/\"");
                    ctx.error(path.span(), message);
                    ok = false;
                }
                ok &= ctx.unique(&mut seen, path, |p| {
                    format!("smoke check {p:?} is listed twice")
                });
            }
            ok.then(|| list.get_ref().iter().map(|p| p.get_ref().clone()).collect())
        }
        None => Some(toml_default(&BLUE_GREEN, "smoke")),
    };
    let window = ctx.duration(&BLUE_GREEN, "rollback_window", &raw.rollback_window, true);
    Some(BlueGreen {
        smoke: smoke?,
        rollback_window: window?,
    })
}

pub(super) fn canary(ctx: &mut Ctx<'_, '_>, raw: Option<&Spanned<RawCanary>>) -> Option<Canary> {
    let default = RawCanary::default();
    let raw = raw.map_or(&default, Spanned::get_ref);
    let steps = match &raw.steps {
        Some(list) => steps(ctx, list),
        None => Some(toml_default(&CANARY, "steps")),
    };
    let pause = ctx.duration(&CANARY, "pause", &raw.pause, false);
    let max_error_rate = ctx.number(
        &CANARY,
        "max_error_rate",
        &raw.max_error_rate,
        |n| (0.0..=1.0).contains(&n),
        "between 0 and 1",
    );
    let max_p99_ratio = ctx.number(
        &CANARY,
        "max_p99_ratio",
        &raw.max_p99_ratio,
        |n| n.is_finite() && n > 0.0,
        "finite and greater than 0",
    );
    let p99_floor = ctx.duration(&CANARY, "p99_floor", &raw.p99_floor, true);
    let min_requests = ctx.u32(&CANARY, "min_requests", &raw.min_requests, 1);
    Some(Canary {
        steps: steps?,
        pause: pause?,
        max_error_rate: max_error_rate?,
        max_p99_ratio: max_p99_ratio?,
        p99_floor: p99_floor?,
        min_requests: min_requests?,
    })
}

/// Percentages, strictly increasing, each 1 to 100, the last 100.
fn steps(ctx: &mut Ctx<'_, '_>, list: &Spanned<Vec<Spanned<i64>>>) -> Option<Vec<u8>> {
    let Some(last) = list.get_ref().last() else {
        let message = "`steps` is empty; the canary needs at least the last step, 100";
        ctx.error(list.span(), message);
        return None;
    };
    let mut out = Some(Vec::new());
    let mut previous: Option<i64> = None;
    let mut last_refused = false;
    for step in list.get_ref() {
        let n = *step.get_ref();
        let problem = if (1..=100).contains(&n) {
            previous
                .filter(|p| n <= *p)
                .map(|p| format!("canary steps must increase strictly, but {n} comes after {p}"))
        } else {
            Some(format!("canary step {n} is not a percentage from 1 to 100"))
        };
        last_refused = problem.is_some();
        match (problem, u8::try_from(n)) {
            (None, Ok(n)) => {
                if let Some(v) = &mut out {
                    v.push(n);
                }
            }
            (Some(message), _) => {
                ctx.error(step.span(), message);
                out = None;
            }
            (None, Err(_)) => out = None,
        }
        if (1..=100).contains(&n) {
            previous = Some(previous.map_or(n, |p| p.max(n)));
        }
    }
    let n = *last.get_ref();
    if n != 100 && !last_refused {
        let message = format!("the last canary step must be 100 (all the traffic), not {n}");
        ctx.error(last.span(), message);
        return None;
    }
    out
}
