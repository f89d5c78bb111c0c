//! The data set and the keys the workers use, all derived from one seed: every run, every
//! backend and every implementation sees the same rows and asks for the same keys.

use sea_orm::prelude::{DateTimeUtc, Uuid};

/// 2025-01-01T00:00:00Z: the first row's `created_at`.
const EPOCH: u64 = 1_735_689_600;

/// Rows an `update many` touches: `created_at` in a range of this many consecutive hours of one
/// tenant, which holds exactly one of its rows each (see [`DataSet::row`]).
pub(crate) const MANY: u64 = 5;

/// Short texts for `label`.
const WORDS: [&str; 16] = [
    "anchor", "bolt", "cable", "drill", "epoxy", "flange", "gasket", "hinge", "insert", "joint",
    "knob", "lever", "magnet", "nozzle", "o-ring", "pulley",
];

/// `SplitMix64`'s output function: a good 64-bit mix, cheap and reproducible everywhere.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A hash of `parts` under `seed`.
pub(crate) fn hash(seed: u64, parts: &[u64]) -> u64 {
    parts.iter().fold(mix(seed), |h, &p| mix(h ^ p))
}

/// A random-looking (version 4 layout) UUID from `parts`.
pub(crate) fn uuid(seed: u64, parts: &[u64]) -> Uuid {
    let hi = hash(seed, parts);
    let lo = mix(hi ^ 0x5eed);
    let mut bytes = [0u8; 16];
    bytes[..8].copy_from_slice(&hi.to_le_bytes());
    bytes[8..].copy_from_slice(&lo.to_le_bytes());
    uuid::Builder::from_random_bytes(bytes).into_uuid()
}

/// A stream of random numbers (`SplitMix64`).
#[derive(Debug, Clone)]
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64, parts: &[u64]) -> Self {
        Self(hash(seed, parts))
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        mix(self.0)
    }

    /// Uniform in `0..n` (the modulo bias is below 1e-15 for our `n`).
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
}

/// One row of `item`.
#[derive(Debug, Clone)]
pub(crate) struct Row {
    pub(crate) id: Uuid,
    pub(crate) tenant_id: Uuid,
    pub(crate) label: String,
    pub(crate) qty: i32,
    pub(crate) created_at: DateTimeUtc,
}

/// The data set: `tenants` × `rows`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct DataSet {
    pub(crate) seed: u64,
    pub(crate) tenants: u64,
    pub(crate) rows: u64,
}

/// Domain-separation tags for [`hash`].
mod tag {
    pub(super) const TENANT: u64 = 1;
    pub(super) const ROW: u64 = 2;
    pub(super) const FIELDS: u64 = 3;
}

impl DataSet {
    /// Tenant number `t`'s id.
    pub(crate) fn tenant(&self, t: u64) -> Uuid {
        uuid(self.seed, &[tag::TENANT, t])
    }

    /// The id of row `r` of tenant `t`.
    pub(crate) fn row_id(&self, t: u64, r: u64) -> Uuid {
        uuid(self.seed, &[tag::ROW, t, r])
    }

    /// Row `r` of tenant `t`. Each tenant's rows are an hour apart, so `created_at` is
    /// distinct within a tenant and the newest rows are the highest `r`.
    pub(crate) fn row(&self, t: u64, r: u64) -> Row {
        let h = hash(self.seed, &[tag::FIELDS, t, r]);
        let secs = EPOCH + r * 3_600 + h % 3_600;
        Row {
            id: self.row_id(t, r),
            tenant_id: self.tenant(t),
            label: format!("{} {r}", WORDS[(h >> 12) as usize % WORDS.len()]),
            qty: ((h >> 20) % 1_000) as i32,
            created_at: timestamp(secs),
        }
    }

    /// Every row in insertion order: round `r` of every tenant, then round `r + 1`, so that a
    /// tenant's rows are spread over the table as rows written over time are, not packed.
    pub(crate) fn rows_in_order(&self) -> impl Iterator<Item = Row> + '_ {
        (0..self.rows).flat_map(move |r| (0..self.tenants).map(move |t| self.row(t, r)))
    }
}

/// `secs` after the Unix epoch.
pub(crate) fn timestamp(secs: u64) -> DateTimeUtc {
    i64::try_from(secs)
        .ok()
        .and_then(|secs| DateTimeUtc::from_timestamp(secs, 0))
        .expect("timestamps of the data set are in range")
}

/// What one operation works on.
#[derive(Debug, Clone)]
pub(crate) struct Key {
    pub(crate) tenant: Uuid,
    /// The row read (get), or written (insert, update, delete).
    pub(crate) id: Uuid,
    /// For writes: the label to insert, and the one the update sets.
    pub(crate) label: String,
    pub(crate) updated: String,
    pub(crate) qty: i32,
    pub(crate) created_at: DateTimeUtc,
    /// For `update many`: the tenant's rows with `from <= created_at < until`, `MANY` of them
    /// (fewer when the tenant has fewer rows). The rows a block inserts are newer than `until`.
    pub(crate) from: DateTimeUtc,
    pub(crate) until: DateTimeUtc,
}

impl Key {
    /// A read of a random row of a random tenant.
    pub(crate) fn read(data: &DataSet, rng: &mut Rng) -> Self {
        let t = rng.below(data.tenants);
        let r = rng.below(data.rows);
        Self::read_of(data, t, r)
    }

    /// A read of row `r` of tenant `t`.
    pub(crate) fn read_of(data: &DataSet, t: u64, r: u64) -> Self {
        let (from, until) = range(data, r);
        Self {
            tenant: data.tenant(t),
            id: data.row_id(t, r),
            label: String::new(),
            updated: String::new(),
            qty: 0,
            created_at: timestamp(EPOCH),
            from,
            until,
        }
    }

    /// A new row for a random tenant; `unique` makes its id unique in the run.
    pub(crate) fn write(data: &DataSet, rng: &mut Rng, unique: &[u64]) -> Self {
        let t = rng.below(data.tenants);
        let h = rng.next_u64();
        Self::new_row(data, t, h, unique)
    }

    /// A new row for tenant `t`; `unique` makes its id unique in the run.
    pub(crate) fn write_for(data: &DataSet, t: u64, unique: &[u64]) -> Self {
        Self::new_row(data, t, hash(data.seed, unique), unique)
    }

    fn new_row(data: &DataSet, t: u64, h: u64, unique: &[u64]) -> Self {
        let word = WORDS[(h >> 12) as usize % WORDS.len()];
        let (from, until) = range(data, h >> 40);
        Self {
            tenant: data.tenant(t),
            id: uuid(data.seed, unique),
            label: format!("{word} new"),
            updated: format!("{word} updated"),
            qty: ((h >> 20) % 1_000) as i32,
            created_at: timestamp(EPOCH + (data.rows + 1) * 3_600),
            from,
            until,
        }
    }
}

/// The `created_at` range of `MANY` consecutive rows of a tenant, the first of them picked by
/// `pick`: row `r` was created in hour `r` after [`EPOCH`], so the range holds rows `first` to
/// `first + MANY - 1` of every tenant.
fn range(data: &DataSet, pick: u64) -> (DateTimeUtc, DateTimeUtc) {
    let n = data.rows.min(MANY);
    let first = pick % (data.rows - n + 1);
    (
        timestamp(EPOCH + first * 3_600),
        timestamp(EPOCH + (first + n) * 3_600),
    )
}
