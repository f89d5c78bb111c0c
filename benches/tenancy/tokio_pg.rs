//! The hand-written tokio-postgres controls: the SQL of raw sqlx on the driver the pipeline uses,
//! without the library. `tokio-pg` is the driver's ceiling; `tokio-pg-rls` is the RLS binding
//! done by hand in one round trip, what RLS mode with the pipeline does for a read.

use tenant::pipeline::deadpool_postgres::Pool;
use tenant::pipeline::tokio_postgres;
use tenant::pipeline::tokio_postgres::types::ToSql;

use crate::Result;
use crate::data::{Key, Row};
use crate::ops::{
    Op, Outcome, PG_COUNT, PG_DELETE, PG_GET, PG_INSERT, PG_PAGE, PG_UPDATE, PG_UPDATE_MANY,
};

/// The pools of one data set at one concurrency: as the plain role (`tokio-pg`) and as the RLS
/// role (`tokio-pg-rls`; not on Citus, which needs `BEGIN` and `SET LOCAL` as two messages).
#[derive(Debug)]
pub(crate) struct TokioPg {
    pub(crate) plain: Pool,
    pub(crate) app: Option<Pool>,
}

/// A pool of `size` connections to `url`: the pipeline's own (`Pipeline::connect`), so that the
/// driver is configured exactly as the library's; every connection made before measuring (like
/// the sqlx pools' `min_connections`).
pub(crate) async fn pool(url: &str, size: usize) -> Result<Pool> {
    let pool = tenant::Pipeline::connect(url, size)?.pool().clone();
    let clients = futures::future::try_join_all((0..size).map(|_| pool.get())).await?;
    drop(clients);
    Ok(pool)
}

/// How a unit is bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Binding {
    /// The statement alone, as the plain role (`tokio-pg`).
    None,
    /// `BEGIN; SET LOCAL app.tenant_id = '..'`, as the RLS role (`tokio-pg-rls`).
    Rls,
    /// [`Binding::Rls`] and the library's `SET LOCAL search_path = public, pg_temp`
    /// (`tokio-pg-rls-pin`).
    RlsPinned,
}

/// What the statement returned.
enum Done {
    Rows(Vec<tokio_postgres::Row>),
    Affected(u64),
}

impl TokioPg {
    /// Runs `op` on `key`: the statement alone as the plain role, or as the RLS role between
    /// `BEGIN; SET LOCAL ..` and `COMMIT`, the three issued before any is awaited.
    pub(crate) async fn run(&self, binding: Binding, op: Op, key: &Key) -> Result<Outcome> {
        let rls = binding != Binding::None;
        let pool = if rls {
            self.app
                .as_ref()
                .ok_or("the hand-written RLS pipeline does not run here")?
        } else {
            &self.plain
        };
        let client = pool.get().await?;
        // Prepared once per connection, outside the transaction: what the pipeline does too.
        let statement = client.prepare_cached(sql(op)).await?;
        let bumped = key.qty + 1;
        let params: Vec<&(dyn ToSql + Sync)> = match op {
            Op::Get | Op::Delete => vec![&key.id, &key.tenant],
            Op::Page | Op::Count => vec![&key.tenant],
            Op::Insert => vec![&key.id, &key.tenant, &key.label, &key.qty, &key.created_at],
            Op::Update => vec![&key.updated, &bumped, &key.id, &key.tenant],
            Op::UpdateMany => vec![&key.tenant, &key.from, &key.until],
        };
        let run = async {
            Ok::<_, tokio_postgres::Error>(if matches!(op, Op::Delete | Op::UpdateMany) {
                Done::Affected(client.execute(&statement, &params).await?)
            } else {
                Done::Rows(client.query(&statement, &params).await?)
            })
        };
        let done = if rls {
            // A setting takes no bind parameter: the id is written in; a UUID's text is safe
            // there. `join!` polls the three in order, and each sends its request on its first
            // poll, so they leave together and come back in one round trip.
            let mut begin = format!("BEGIN; SET LOCAL app.tenant_id = '{}'", key.tenant);
            if binding == Binding::RlsPinned {
                begin.push_str("; SET LOCAL search_path = public, pg_temp");
            }
            let (opened, done, committed) = tokio::join!(
                client.batch_execute(&begin),
                run,
                client.batch_execute("COMMIT"),
            );
            opened?;
            let done = done?;
            committed?;
            done
        } else {
            run.await?
        };
        outcome(op, done)
    }
}

/// The statement of `op`: raw sqlx's, with its `tenant_id` filter.
fn sql(op: Op) -> &'static str {
    match op {
        Op::Get => PG_GET,
        Op::Page => PG_PAGE,
        Op::Count => PG_COUNT,
        Op::Insert => PG_INSERT,
        Op::Update => PG_UPDATE,
        Op::Delete => PG_DELETE,
        Op::UpdateMany => PG_UPDATE_MANY,
    }
}

/// Every row decoded into a [`Row`], as the other implementations decode theirs.
fn outcome(op: Op, done: Done) -> Result<Outcome> {
    Ok(match done {
        Done::Affected(n) => Outcome::Count(n),
        Done::Rows(rows) if op == Op::Count => {
            let row = rows.first().ok_or("count returned no row")?;
            Outcome::Count(u64::try_from(row.try_get::<_, i64>(0)?)?)
        }
        Done::Rows(rows) => {
            let rows = rows.iter().map(decode).collect::<Result<Vec<Row>>>()?;
            if op == Op::Page {
                Outcome::Rows(rows.len())
            } else {
                Outcome::Row(rows.into_iter().next())
            }
        }
    })
}

fn decode(row: &tokio_postgres::Row) -> Result<Row> {
    Ok(Row {
        id: row.try_get(0)?,
        tenant_id: row.try_get(1)?,
        label: row.try_get(2)?,
        qty: row.try_get(3)?,
        created_at: row.try_get(4)?,
    })
}
