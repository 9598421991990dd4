//! The calls-in-flight gauges: the counts held in Redis (the fleet-wide values, so every dial
//! worker reports the same number and dashboards take the `max`) beside the limits from
//! PostgreSQL, for the jobs this worker holds calls of.

use std::collections::HashSet;

use deadpool_postgres::Pool;
use uuid::Uuid;

use super::Limits;

/// Reports the jobs this worker holds calls of, and once more the jobs it held at the previous
/// report (so a job whose calls all ended drops to its real count rather than freezing).
#[derive(Debug, Default)]
pub struct InFlightGauges {
    last: HashSet<(Uuid, Uuid)>,
}

impl InFlightGauges {
    /// One report for the `(attempt, workspace, job)` leases held now.
    pub async fn report(
        &mut self,
        limits: &Limits,
        db: &Pool,
        lease_keys: &[(Uuid, Uuid, Uuid)],
    ) -> anyhow::Result<()> {
        let now: HashSet<(Uuid, Uuid)> = lease_keys.iter().map(|&(_, ws, job)| (ws, job)).collect();
        let pairs: Vec<(Uuid, Uuid)> = now.union(&self.last).copied().collect();
        self.last = now;
        if pairs.is_empty() {
            return Ok(());
        }
        let jobs: Vec<Uuid> = pairs.iter().map(|p| p.1).collect();
        let client = db.get().await?;
        let rows = client
            .query(
                "SELECT b.id, b.max_concurrent_dials AS job_limit,
                        batch_calls_per_second(b.max_calls_per_second, b.workspace_id)
                            AS job_cps,
                        w.max_concurrent_dials AS workspace_limit
                 FROM batches b JOIN workspaces w ON w.id = b.workspace_id WHERE b.id = ANY($1)",
                &[&jobs],
            )
            .await?;
        drop(client);
        for row in rows {
            let job: Uuid = row.try_get("id")?;
            let Some(&(ws, _)) = pairs.iter().find(|p| p.1 == job) else {
                continue;
            };
            let (ws_in_flight, job_in_flight) = limits.in_use(ws, job).await?;
            // The columns' CHECKs keep them at least 1: a negative one is a corrupt row, reported
            // as such rather than drawn as a limit of 0.
            let count = |column: &str| -> anyhow::Result<u64> {
                let v: i32 = row.try_get(column)?;
                u64::try_from(v)
                    .map_err(|_| anyhow::anyhow!("job {job}: {column} {v} is out of range"))
            };
            shared::metrics::set_job_calls(
                job,
                u64::from(job_in_flight),
                count("job_limit")?,
                count("job_cps")?,
            );
            shared::metrics::set_workspace_calls(
                ws,
                u64::from(ws_in_flight),
                count("workspace_limit")?,
            );
        }
        Ok(())
    }
}
