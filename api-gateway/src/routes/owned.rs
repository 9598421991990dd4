//! What agents and phone numbers have in common: rows owned by a workspace, listed oldest first
//! with a cursor, and deleted softly (batches that refer to them keep working).

use deadpool_postgres::GenericClient;
use tokio_postgres::Row;
use uuid::Uuid;

use crate::error::ApiError;
use crate::pagination::{Cursor, PageRequest};

/// A table of workspace-owned rows with `id`, `workspace_id`, `created_at` and `deleted_at`.
pub struct Owned {
    /// The table.
    pub table: &'static str,
    /// The columns to return; `id` and `created_at` among them (the cursor reads them by name).
    pub columns: &'static str,
    /// The resource's name in a 404.
    pub what: &'static str,
}

impl Owned {
    /// One page of the workspace's live rows and the cursor of the next page.
    pub async fn page(
        &self,
        client: &impl GenericClient,
        workspace: Uuid,
        requested_limit: Option<i64>,
        cursor: Option<&str>,
    ) -> Result<(Vec<Row>, Option<String>), ApiError> {
        let page = PageRequest::parse(requested_limit, cursor)?;
        let (after_at, after_id, fetch) = page.keyset();
        let sql = format!(
            "SELECT {columns} FROM {table}
             WHERE workspace_id = $1 AND deleted_at IS NULL
               AND ($2::timestamptz IS NULL OR (created_at, id) > ($2, $3))
             ORDER BY created_at, id LIMIT $4",
            columns = self.columns,
            table = self.table
        );
        let rows = client
            .query(&sql, &[&workspace, &after_at, &after_id, &fetch])
            .await?;
        Ok(page.split(rows, |r| Cursor {
            at: r.get("created_at"),
            id: r.get("id"),
        }))
    }

    /// Soft-deletes one of the workspace's rows; another workspace's id is "not found".
    pub async fn remove(
        &self,
        client: &impl GenericClient,
        workspace: Uuid,
        id: Uuid,
    ) -> Result<(), ApiError> {
        let sql = format!(
            "UPDATE {} SET deleted_at = now() WHERE id = $1 AND workspace_id = $2 AND deleted_at IS NULL",
            self.table
        );
        match client.execute(&sql, &[&id, &workspace]).await? {
            0 => Err(ApiError::NotFound(self.what)),
            _ => Ok(()),
        }
    }
}
