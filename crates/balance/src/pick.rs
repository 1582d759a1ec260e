//! The two selection algorithms, as pure functions over member indices.
//!
//! Owns smooth weighted round-robin (nginx's `ngx_http_upstream_get_peer`)
//! and power of two choices. They see members only through closures
//! (weight, eligibility, load, randomness), so they must never touch health,
//! atomics, locks or the clock, and never allocate: `Pool` supplies all of
//! that.

/// Smooth weighted round-robin, exactly as nginx does it: every eligible
/// member's current weight grows by its weight, the largest current weight
/// wins (the first one on a tie) and loses the total. Ineligible members keep
/// their current weight untouched.
pub(crate) fn smooth_weighted(
    current: &mut [i64],
    weight: impl Fn(usize) -> u32,
    eligible: impl Fn(usize) -> bool,
) -> Option<usize> {
    let mut total = 0i64;
    let mut best: Option<usize> = None;
    for index in 0..current.len() {
        if !eligible(index) {
            continue;
        }
        let w = i64::from(weight(index));
        current[index] += w;
        total += w;
        if best.is_none_or(|b| current[index] > current[b]) {
            best = Some(index);
        }
    }
    let best = best?;
    current[best] -= total;
    Some(best)
}

/// Power of two choices: two distinct eligible members drawn at random,
/// proportionally to their weights; the one with the lower load wins (the
/// first drawn on a tie). With a single eligible member, that one.
///
/// `random(n)` returns a number in `0..n`. Eligibility is read on every pass
/// without being stored, so a member that changes in between is tolerated:
/// a draw that falls past the end takes the last eligible member seen.
pub(crate) fn power_of_two(
    len: usize,
    weight: impl Fn(usize) -> u32,
    eligible: impl Fn(usize) -> bool,
    load: impl Fn(usize) -> usize,
    mut random: impl FnMut(u64) -> u64,
) -> Option<usize> {
    let weight_of = |index: usize| {
        if eligible(index) {
            u64::from(weight(index))
        } else {
            0
        }
    };
    let total: u64 = (0..len).map(weight_of).sum();
    if total == 0 {
        return None;
    }
    // The member at cumulative weight `target`, skipping `skip`.
    let draw = |target: u64, skip: Option<usize>| {
        let mut seen = 0u64;
        let mut last = None;
        for index in (0..len).filter(|&i| Some(i) != skip) {
            let w = weight_of(index);
            if w == 0 {
                continue;
            }
            last = Some(index);
            seen += w;
            if target < seen {
                break;
            }
        }
        last
    };
    let first = draw(random(total), None)?;
    let rest = total.saturating_sub(u64::from(weight(first)));
    if rest == 0 {
        return Some(first);
    }
    let Some(second) = draw(random(rest), Some(first)) else {
        return Some(first);
    };
    if load(second) < load(first) {
        Some(second)
    } else {
        Some(first)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn swrr_sequence(weights: &[u32], picks: usize) -> String {
        let mut current = vec![0; weights.len()];
        (0..picks)
            .map(|_| {
                let i = smooth_weighted(&mut current, |i| weights[i], |i| weights[i] > 0).unwrap();
                char::from(b'a' + u8::try_from(i).unwrap())
            })
            .collect()
    }

    #[test]
    fn swrr_matches_nginx_documented_sequence() {
        // nginx 1.3.1's "smooth weighted round-robin balancing" change:
        // weights { 5, 1, 1 } give { a, a, b, a, c, a, a }.
        assert_eq!(swrr_sequence(&[5, 1, 1], 7), "aabacaa");
        assert_eq!(swrr_sequence(&[5, 1, 1], 14), "aabacaaaabacaa");
    }

    #[test]
    fn swrr_with_no_eligible_member_is_none() {
        let mut current = vec![0; 3];
        assert_eq!(smooth_weighted(&mut current, |_| 1, |_| false), None);
        assert_eq!(smooth_weighted(&mut [], |_| 1, |_| true), None);
    }

    #[test]
    fn p2c_takes_the_less_loaded_of_the_two_draws() {
        let loads = [5, 1, 3];
        let mut draws = [0u64, 0].into_iter();
        // total 3 → member 0; then among {1, 2} (rest 2), 0 → member 1.
        let picked = power_of_two(3, |_| 1, |_| true, |i| loads[i], |_| draws.next().unwrap());
        assert_eq!(picked, Some(1));
    }

    #[test]
    fn p2c_draws_by_weight_and_never_twice_the_same() {
        let weights = [1u32, 0, 4];
        // Draw 1 of 5 lands in member 2's range; the second draw must skip
        // member 2 and the zero-weight member 1, so it is member 0.
        let mut draws = [1u64, 0].into_iter();
        let mut asked = Vec::new();
        let picked = power_of_two(
            3,
            |i| weights[i],
            |_| true,
            |i| [0, 0, 9][i],
            |n| {
                asked.push(n);
                draws.next().unwrap()
            },
        );
        assert_eq!(picked, Some(0));
        assert_eq!(asked, [5, 1]);
    }

    #[test]
    fn p2c_with_one_eligible_member_takes_it() {
        let picked = power_of_two(4, |_| 1, |i| i == 2, |_| 0, |_| 0);
        assert_eq!(picked, Some(2));
        assert_eq!(power_of_two(4, |_| 1, |_| false, |_| 0, |_| 0), None);
    }
}
