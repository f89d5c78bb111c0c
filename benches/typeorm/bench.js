"use strict";
// The TypeORM control of the tenancy bench (benches/tenancy, `--impls typeorm,typeorm-rls`).
//
// The pattern of the seeds' "production-grade implementation guide", steps 1 to 4, in plain
// JavaScript: the tenant in AsyncLocalStorage, the `TenantRepository` wrapper that adds
// `tenantId` to every `where` and stamps it on writes, and `withTenantTransaction`, which binds
// the tenant with `set_config('app.tenant_id', $1, true)` in a `dataSource.transaction`.
//
//   typeorm      the repository on the DataSource, as the plain role (BYPASSRLS): app-level filter
//   typeorm-rls  the same repository on the transaction's manager, inside withTenantTransaction,
//                as the RLS role (the policy applies)
//
// The Rust bench spawns `node bench.js` once per data set and concurrency and drives it with one
// JSON object per line on stdin; each answer is one JSON line on stdout (diagnostics go to
// stderr). The keys come from the Rust side, so every implementation reads the same rows.
//
//   {"cmd":"init","plain_url":..,"app_url":..,"pool":C,"rows":R,"variants":["typeorm",..]}
//     -> {"ok":true,"versions":{..},"differences":[..]}
//   {"cmd":"block","variant":"typeorm","ops":["insert","update","delete"],"measured":true,
//    "keys":[[key, ..], ..]}          one array of keys per worker (concurrent async tasks)
//     -> {"ok":true,"phases":[{"op":"insert","wall_ns":N,"latencies_ns":[..]}, ..]}
//   {"cmd":"summary"}  -> {"ok":true,"summary":{variant:{op:{count,ops_per_s,p50_us,p99_us}}}}
//   {"cmd":"quit"}     -> {"ok":true}, then the pools are closed and the process exits
//
// A key: {"tenant":uuid,"id":uuid,"label":s,"updated":s,"qty":n,"created_at":secs,"from":secs,
// "until":secs}. Every result is checked; a wrong one answers {"ok":false,"error":..}.

const { AsyncLocalStorage } = require("node:async_hooks");
const readline = require("node:readline");

// Only protocol lines go to stdout.
const out = process.stdout;
console.log = console.error;
console.info = console.error;

function load(name) {
  try {
    return require(name);
  } catch (e) {
    process.stderr.write(
      `bench.js: cannot load \`${name}\` (${e.message}): run \`npm ci --prefix benches/typeorm\`\n`,
    );
    process.exit(2);
  }
}
const typeorm = load("typeorm");
const { DataSource, EntitySchema, And, MoreThanOrEqual, LessThan } = typeorm;

// Step 1: the tenant context.

const tenantStorage = new AsyncLocalStorage();

function getTenantId() {
  const ctx = tenantStorage.getStore();
  if (!ctx?.tenantId) {
    throw new Error("No tenant context — refusing to run an unscoped query");
  }
  return ctx.tenantId;
}

function runWithTenant(ctx, fn) {
  return tenantStorage.run(ctx, fn);
}

// Step 2: the entity, over the bench's existing table (no synchronize, no migrations).

const Item = new EntitySchema({
  name: "Item",
  tableName: "item",
  columns: {
    id: { type: "uuid", primary: true },
    tenantId: { type: "uuid", name: "tenant_id" },
    label: { type: "varchar" },
    qty: { type: "int" },
    createdAt: { type: "timestamptz", name: "created_at" },
  },
});

// Step 3: the repository wrapper. `count` and `updateWhere` are not in the guide's wrapper;
// they follow its two patterns (`scoped` for reads, `{ ..., tenantId }` criteria for writes).

class TenantRepository {
  constructor(repo) {
    this.repo = repo;
  }

  scoped(options = {}) {
    const tenantId = getTenantId();
    const where = options.where;
    return {
      ...options,
      where: Array.isArray(where)
        ? where.map((w) => ({ ...w, tenantId }))
        : { ...(where ?? {}), tenantId },
    };
  }

  find(options) {
    return this.repo.find(this.scoped(options));
  }

  findOne(options) {
    return this.repo.findOne(this.scoped(options));
  }

  count(options) {
    return this.repo.count(this.scoped(options));
  }

  async create(data) {
    const entity = this.repo.create({ ...data, tenantId: getTenantId() });
    // The guide calls `save`, with ids the database generates. Here the bench gives the id,
    // and `save` of an entity with an id SELECTs it first to choose between INSERT and
    // UPDATE: `insert` sends the one INSERT the guide's `save` would (and, outside
    // `withTenantTransaction`, without the transaction `save` wraps it in).
    await this.repo.insert(entity);
    return entity;
  }

  async update(id, data) {
    return this.repo.update({ id, tenantId: getTenantId() }, data);
  }

  async updateWhere(where, data) {
    return this.repo.update({ ...where, tenantId: getTenantId() }, data);
  }

  async delete(id) {
    return this.repo.delete({ id, tenantId: getTenantId() });
  }
}

// Step 4: the tenant bound for RLS, per transaction.

async function withTenantTransaction(dataSource, work) {
  const tenantId = getTenantId();
  return dataSource.transaction(async (manager) => {
    await manager.query("SELECT set_config('app.tenant_id', $1, true)", [tenantId]);
    return work(manager);
  });
}

// The operations of benches/tenancy/ops.rs, through the repository.

const PAGE = 50;
const MANY = 5;

const OPS = {
  get: (items, key) => items.findOne({ where: { id: key.id } }),
  page: (items) => items.find({ order: { createdAt: "DESC" }, take: PAGE }),
  count: (items) => items.count(),
  insert: (items, key) =>
    items.create({ id: key.id, label: key.label, qty: key.qty, createdAt: key.createdAt }),
  update: (items, key) => items.update(key.id, { label: key.updated, qty: key.qty + 1 }),
  delete: (items, key) => items.delete(key.id),
  update_many: (items, key) =>
    items.updateWhere(
      { createdAt: And(MoreThanOrEqual(key.from), LessThan(key.until)) },
      { qty: () => "qty + 1" },
    ),
};

// What each operation must return: an operation that quietly read nothing (a binding gone
// wrong) fails the run instead of looking fast.
function check(op, key, got, rows) {
  switch (op) {
    case "get":
      return got != null && got.id === key.id && got.tenantId === key.tenant;
    case "page":
      return Array.isArray(got) && got.length === Math.min(rows, PAGE);
    case "count":
      return got === rows;
    case "insert":
      return got != null && got.id === key.id && got.label === key.label;
    case "update":
    case "delete":
      return got != null && got.affected === 1;
    case "update_many":
      return got != null && got.affected === Math.min(rows, MANY);
    default:
      return false;
  }
}

// What differs from the Rust implementations' operations; the Rust side prints it.
const DIFFERENCES = [
  "insert: the guide's `create` calls `save`, which for an entity with an id (the bench gives " +
    "it) first SELECTs it by id; `insert` is called instead: one INSERT (and, for typeorm, no " +
    "transaction around it, which `save` would open); no RETURNING: the row returned is the " +
    "inserted entity",
  "update by id, update many: `repository.update` returns rows affected, not the row " +
    "(no RETURNING); checked by rows affected (1, and 5 for update many)",
  "count: TypeORM's `count` sends COUNT(1) without a subquery",
  "update many, count: not in the guide's wrapper; added as `updateWhere` and `count` in its style",
  "statements: node-postgres sends each with unnamed (not prepared, not cached) statements; " +
    "one JS thread runs every worker",
];

// A package's version, from its package.json (which its `exports` may not list).
function version(name) {
  const path = require("node:path");
  const fs = require("node:fs");
  let dir = path.dirname(require.resolve(name));
  while (path.basename(dir) !== name && path.dirname(dir) !== dir) {
    dir = path.dirname(dir);
  }
  return JSON.parse(fs.readFileSync(path.join(dir, "package.json"), "utf8")).version;
}

// The data sources and measurements.

const variants = new Map();
const measured = new Map();
let rows = 0;

function variant(name) {
  const v = variants.get(name);
  if (!v) {
    throw new Error(`unknown or uninitialised variant \`${name}\``);
  }
  return v;
}

function runOp(v, op, key) {
  const work = OPS[op];
  return runWithTenant({ tenantId: key.tenant }, () =>
    v.rls
      ? withTenantTransaction(v.dataSource, (manager) =>
          work(new TenantRepository(manager.getRepository(Item)), key),
        )
      : work(new TenantRepository(v.dataSource.getRepository(Item)), key),
  );
}

function decodeKey(k) {
  return {
    tenant: k.tenant,
    id: k.id,
    label: k.label,
    updated: k.updated,
    qty: k.qty,
    createdAt: new Date(k.created_at * 1000),
    from: new Date(k.from * 1000),
    until: new Date(k.until * 1000),
  };
}

async function init(msg) {
  rows = msg.rows;
  for (const name of msg.variants) {
    const rls = name === "typeorm-rls";
    if (!rls && name !== "typeorm") {
      throw new Error(`unknown variant \`${name}\``);
    }
    const dataSource = new DataSource({
      type: "postgres",
      url: rls ? msg.app_url : msg.plain_url,
      entities: [Item],
      synchronize: false,
      logging: false,
      poolSize: msg.pool,
      // Idle connections stay open while the other implementations' blocks run.
      extra: { idleTimeoutMillis: 0 },
    });
    await dataSource.initialize();
    // Every connection of the pool made before measuring, like the Rust pools'.
    const runners = Array.from({ length: msg.pool }, () => dataSource.createQueryRunner());
    await Promise.all(runners.map((r) => r.connect()));
    await Promise.all(runners.map((r) => r.release()));
    variants.set(name, { rls, dataSource });
  }
  return {
    versions: {
      node: process.version,
      typeorm: version("typeorm"),
      pg: version("pg"),
    },
    differences: DIFFERENCES,
  };
}

async function phase(v, op, workers) {
  if (!OPS[op]) {
    throw new Error(`unknown operation \`${op}\``);
  }
  const start = process.hrtime.bigint();
  const done = await Promise.all(
    workers.map(async (keys) => {
      const latencies = [];
      for (const key of keys) {
        const t0 = process.hrtime.bigint();
        const got = await runOp(v, op, key);
        if (!check(op, key, got, rows)) {
          throw new Error(
            `${op}: unexpected result ${JSON.stringify(got)} for tenant ${key.tenant} row ${key.id}`,
          );
        }
        latencies.push(Number(process.hrtime.bigint() - t0));
      }
      return latencies;
    }),
  );
  const wall = Number(process.hrtime.bigint() - start);
  return { op, wall_ns: wall, latencies_ns: done.flat() };
}

async function block(msg) {
  const v = variant(msg.variant);
  const workers = msg.keys.map((keys) => keys.map(decodeKey));
  const phases = [];
  for (const op of msg.ops) {
    phases.push(await phase(v, op, workers));
  }
  if (msg.measured) {
    for (const p of phases) {
      const id = `${msg.variant}\u0000${p.op}`;
      const cell = measured.get(id) ?? { wall_ns: 0, latencies_ns: [] };
      cell.wall_ns += p.wall_ns;
      for (const l of p.latencies_ns) {
        cell.latencies_ns.push(l);
      }
      measured.set(id, cell);
    }
  }
  return { phases };
}

// Per variant and operation over the measured blocks: ops/s = operations / summed wall time;
// p50 and p99 by nearest rank, as the Rust report computes them.
function summary() {
  const result = {};
  for (const [id, cell] of measured) {
    const [name, op] = id.split("\u0000");
    const sorted = Float64Array.from(cell.latencies_ns).sort();
    const n = sorted.length;
    const rank = (p) => sorted[Math.min(Math.max(Math.ceil((p * n) / 100), 1), n) - 1] / 1000;
    result[name] ??= {};
    result[name][op] = {
      count: n,
      ops_per_s: n / (cell.wall_ns / 1e9),
      p50_us: rank(50),
      p99_us: rank(99),
    };
  }
  return { summary: result };
}

async function quit() {
  for (const v of variants.values()) {
    await v.dataSource.destroy();
  }
  variants.clear();
  return {};
}

const COMMANDS = { init, block, summary, quit };

function reply(obj) {
  out.write(`${JSON.stringify(obj)}\n`);
}

async function main() {
  if (process.argv.includes("--help")) {
    process.stderr.write(
      "usage: node bench.js  (driven by benches/tenancy over stdin: " +
        "cargo bench --all-features --bench tenancy -- --impls seaorm,typeorm,typeorm-rls " +
        "--backend postgres)\n",
    );
    return;
  }
  const lines = readline.createInterface({ input: process.stdin, crlfDelay: Infinity });
  for await (const line of lines) {
    if (!line.trim()) {
      continue;
    }
    let msg;
    try {
      msg = JSON.parse(line);
      const command = COMMANDS[msg.cmd];
      if (!command) {
        throw new Error(`unknown command \`${msg.cmd}\``);
      }
      reply({ ok: true, ...(await command(msg)) });
    } catch (e) {
      reply({ ok: false, error: String(e?.stack ?? e) });
    }
    if (msg?.cmd === "quit") {
      break;
    }
  }
  await quit();
  // An open stdin would keep the process alive.
  lines.close();
  process.stdin.destroy();
}

main().catch((e) => {
  process.stderr.write(`bench.js: ${e?.stack ?? e}\n`);
  process.exit(1);
});
