-- The rate a batch's starts are bounded by, as one function instead of a subquery that every
-- batch query used to embed (api-gateway `batches::model::COLUMNS`).
--
-- The subquery named the `batches` table to reach the batch's workspace, so a query that
-- aliased the table (`FROM batches b`) failed at run time. A function takes the batch's own
-- rate and its workspace as arguments, names no table of the calling query, and works in a
-- `RETURNING` list as in a `SELECT`.
--
-- The rule is V15's: the batch's own rate, else its workspace's, else (a workspace without a
-- rate) the workspace's ceiling. NULL only when the workspace does not exist.
CREATE FUNCTION batch_calls_per_second(own integer, workspace uuid) RETURNS integer
    LANGUAGE sql STABLE PARALLEL SAFE
AS $$
    SELECT COALESCE(own, (SELECT COALESCE(w.max_calls_per_second, w.cps_ceiling)
                          FROM workspaces w WHERE w.id = workspace))
$$;
