//! How many contacts each of a workspace's open jobs may release this tick (pure).
//!
//! Two bounds hold after every tick: a job's released-but-unfinished contacts stay within
//! `multiplier × its maxConcurrentDials`, and a workspace's within `multiplier × its limit`.
//! The workspace's room goes to its jobs by priority (higher first, strictly); jobs of equal
//! priority share what is left round-robin, one contact at a time, oldest job first, so a big
//! job cannot starve a small one of the same priority.

use uuid::Uuid;

/// One open job's claim on this tick.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobDemand {
    /// The job.
    pub id: Uuid,
    /// Higher runs first.
    pub priority: i16,
    /// How many more it may have released or dialing (its bound minus its in-flight count).
    pub room: u32,
    /// How many of its contacts are due now (counted up to `room`).
    pub due: u32,
}

/// The released-but-unfinished bound for a concurrency limit.
/// Saturating: a bound past u32::MAX is no bound the release step can reach anyway (its
/// per-tick cap is far lower).
pub fn in_flight_bound(max_concurrent_dials: u32, multiplier: u32) -> u32 {
    max_concurrent_dials.saturating_mul(multiplier)
}

/// Splits `workspace_room` among `jobs`, which must be ordered by priority (descending) then
/// age (oldest first). Returns one count per job, in the same order.
pub fn allocate(jobs: &[JobDemand], workspace_room: u32) -> Vec<u32> {
    let mut grant = vec![0u32; jobs.len()];
    let mut budget = workspace_room;
    let mut start = 0;
    while start < jobs.len() && budget > 0 {
        let end = start
            + jobs[start..]
                .iter()
                .take_while(|j| j.priority == jobs[start].priority)
                .count();
        let want: Vec<u32> = jobs[start..end].iter().map(|j| j.room.min(j.due)).collect();
        let total: u64 = want.iter().map(|w| u64::from(*w)).sum();
        if total <= u64::from(budget) {
            for (g, w) in grant[start..end].iter_mut().zip(&want) {
                *g = *w;
            }
            budget -= total as u32;
        } else {
            // Water-filling: every job of the group gets the same share, capped by what it
            // wants; the remainder goes one each to the oldest jobs that still want more.
            let mut left: Vec<u32> = want.clone();
            while budget > 0 {
                let hungry = left.iter().filter(|l| **l > 0).count() as u32;
                if hungry == 0 {
                    break;
                }
                let share = (budget / hungry).max(1);
                for (i, l) in left.iter_mut().enumerate() {
                    if budget == 0 {
                        break;
                    }
                    let give = share.min(*l).min(budget);
                    *l -= give;
                    grant[start + i] += give;
                    budget -= give;
                }
            }
        }
        start = end;
    }
    grant
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn job(priority: i16, room: u32, due: u32) -> JobDemand {
        JobDemand {
            id: Uuid::new_v4(),
            priority,
            room,
            due,
        }
    }

    #[test]
    fn priority_first_then_fair_share() {
        let jobs = [
            job(9, 10, 100),
            job(5, 10, 100),
            job(5, 10, 3),
            job(5, 10, 100),
        ];
        // 10 to the priority-9 job, then 13 left for three equal jobs, one wants only 3.
        assert_eq!(allocate(&jobs, 23), vec![10, 5, 3, 5]);
        assert_eq!(allocate(&jobs, 12), vec![10, 1, 1, 0]);
        assert_eq!(allocate(&jobs, 0), vec![0, 0, 0, 0]);
        assert_eq!(in_flight_bound(5, 2), 10);
    }

    fn arb_jobs() -> impl Strategy<Value = Vec<JobDemand>> {
        prop::collection::vec((1i16..=3, 0u32..40, 0u32..40), 0..8).prop_map(|v| {
            let mut jobs: Vec<JobDemand> = v.into_iter().map(|(p, r, d)| job(p, r, d)).collect();
            jobs.sort_by_key(|j| std::cmp::Reverse(j.priority));
            jobs
        })
    }

    proptest! {
        #[test]
        fn bounds_priority_and_fairness(jobs in arb_jobs(), room in 0u32..120) {
            let grant = allocate(&jobs, room);
            let sum: u32 = grant.iter().sum();
            prop_assert!(sum <= room);
            for (j, g) in jobs.iter().zip(&grant) {
                prop_assert!(*g <= j.room.min(j.due));
            }
            // Work-conserving: room left over only if every job got what it wanted.
            if sum < room {
                for (j, g) in jobs.iter().zip(&grant) {
                    prop_assert_eq!(*g, j.room.min(j.due));
                }
            }
            for (a, (ja, ga)) in jobs.iter().zip(&grant).enumerate() {
                for (jb, gb) in jobs.iter().zip(&grant).skip(a + 1) {
                    // A lower-priority job gets nothing while a higher one wants more.
                    if ja.priority > jb.priority && *gb > 0 {
                        prop_assert_eq!(*ga, ja.room.min(ja.due));
                    }
                    // Equal priority: shares differ by at most one unless capped by want.
                    if ja.priority == jb.priority {
                        if *ga + 1 < *gb { prop_assert_eq!(*ga, ja.room.min(ja.due)); }
                        if *gb + 1 < *ga { prop_assert_eq!(*gb, jb.room.min(jb.due)); }
                    }
                }
            }
        }
    }
}
