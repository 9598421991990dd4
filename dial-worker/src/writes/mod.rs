//! The dial path's group-committed writes (see `crate::group`): the attempt inserts, the
//! carriers' call ids and the attempts' ends, each a statement over arrays written for many
//! dials at once. They take a pool, never a `Ctx`: the context holds them.

pub(crate) mod attempts;
pub(crate) mod ends;

use shared::db::Pool;

use crate::group::Group;
use attempts::{AttemptWriter, CallSid, CallSidWriter, Inserted, NewAttempt};
use ends::{EndRequest, EndWriter, Ended};

/// Opens a group's transaction. A group statement joins its arrays to tables by key; on a
/// table not analyzed yet (a new database, a batch just ingested) the planner may believe it
/// tiny and scan it once per element. Without sequential scans the keys are looked up through
/// their indexes, whatever the statistics say (see also `attempts::INSERT_SQL`).
pub(crate) const BEGIN_GROUP: &str = "BEGIN; SET LOCAL enable_seqscan = off";

/// [`BEGIN_GROUP`] for a transaction whose commit does not wait for the disk.
const BEGIN_UNFLUSHED_GROUP: &str =
    "BEGIN; SET LOCAL enable_seqscan = off; SET LOCAL synchronous_commit = off";

/// Groups written at once per statement: one forming while others commit. 4 measured the
/// same as 2 in the utilization run (within its noise); more make smaller groups, so more
/// commits, for no gain once PostgreSQL is the bottleneck.
const GROUPS_IN_FLIGHT: usize = 2;

/// The most requests in one group: bounds a statement's arrays and its row locks.
const GROUP_MAX: usize = 256;

/// The dial path's writes that many dials make at once, each gathered into groups.
#[derive(Debug, Clone)]
pub(crate) struct Writes {
    /// The attempt inserts (durable).
    pub(crate) attempts: Group<NewAttempt, Option<Inserted>>,
    /// The carriers' call ids (committed without a flush).
    pub(crate) call_sids: Group<CallSid, ()>,
    /// The attempts' ends (durable).
    pub(crate) ends: Group<EndRequest, Ended>,
}

impl Writes {
    /// Starts the writers on the current runtime.
    pub(crate) fn start(db: &Pool) -> Self {
        Self {
            attempts: Group::start(db.clone(), AttemptWriter, GROUPS_IN_FLIGHT, GROUP_MAX),
            call_sids: Group::start(db.clone(), CallSidWriter, GROUPS_IN_FLIGHT, GROUP_MAX),
            ends: Group::start(db.clone(), EndWriter, GROUPS_IN_FLIGHT, GROUP_MAX),
        }
    }
}
