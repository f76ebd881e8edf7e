/**
 * Read models across plugin upgrades: a projection whose `version` changed is rebuilt from the store (reset, setup,
 * every event again); the same version resumes from its checkpoint; `rebuild: true` forces it; a change without
 * `reset` is refused with a message that says what to add.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { test } from "node:test";
import { type ProjectionOptions, startProjection } from "../../src/index.js";
import type { Backend } from "../backends.js";

export function projectionVersionConformance(backend: Backend): void {
  test(`projections (${backend.name}): a version change rebuilds the read model from the store; the same version resumes`, async () => {
    const place = backend.place();
    const dir = place.dir;
    const store = place.open("s");
    const readModel = join(dir, "rm", "tasks.sqlite");
    for (let i = 1; i <= 5; i++)
      await store.append(`task-${i}`, [{ type: "task_created_v1", data: { title: `t${i}` } }]);

    // v1: one column
    const v1: ProjectionOptions = {
      name: "tasks",
      readModel,
      setup: (db) => db.exec("CREATE TABLE IF NOT EXISTS tasks (id TEXT PRIMARY KEY)"),
      apply: (db, e) => void db.prepare("INSERT INTO tasks (id) VALUES (?)").run(e.stream),
    };
    let p = startProjection(store, v1);
    await p.caughtUp(await store.headPosition());
    assert.equal(p.db.prepare("SELECT count(*) FROM tasks").pluck().get(), 5);
    await p.stop();

    // same version again: resumes after its checkpoint (no event applied twice, no primary-key clash)
    await store.append("task-6", [{ type: "task_created_v1", data: { title: "t6" } }]);
    p = startProjection(store, v1);
    await p.caughtUp(await store.headPosition());
    assert.equal(p.db.prepare("SELECT count(*) FROM tasks").pluck().get(), 6);
    await p.stop();

    // v2 adds a column apply() fills: without reset the start is refused, saying what to add
    const v2: ProjectionOptions = {
      name: "tasks",
      readModel,
      version: 2,
      setup: (db) => db.exec("CREATE TABLE IF NOT EXISTS tasks (id TEXT PRIMARY KEY, title TEXT NOT NULL)"),
      apply: (db, e) =>
        void db
          .prepare("INSERT INTO tasks (id, title) VALUES (?, ?)")
          .run(e.stream, (e.data as { title: string }).title),
    };
    assert.throws(() => startProjection(store, v2), /must be rebuilt \(read model version 1, now 2\).*reset\(db\)/);
    let resets = 0;
    const v2r: ProjectionOptions = {
      ...v2,
      reset: (db) => {
        resets++;
        db.exec("DROP TABLE IF EXISTS tasks");
      },
    };
    p = startProjection(store, v2r);
    await p.caughtUp(await store.headPosition());
    assert.equal(resets, 1);
    assert.deepEqual(p.db.prepare("SELECT title FROM tasks ORDER BY id").pluck().all(), [
      "t1",
      "t2",
      "t3",
      "t4",
      "t5",
      "t6",
    ]);
    await p.stop();

    // v2 again: no reset; rebuild: true forces one
    p = startProjection(store, v2r);
    await p.caughtUp(await store.headPosition());
    assert.equal(resets, 1);
    await p.stop();
    p = startProjection(store, { ...v2r, rebuild: true });
    await p.caughtUp(await store.headPosition());
    assert.equal(resets, 2);
    assert.equal(p.db.prepare("SELECT count(*) FROM tasks").pluck().get(), 6);
    await p.stop();
    assert.throws(() => startProjection(store, { ...v2r, version: 0 }), /version must be a positive integer/);
    await store.close();
  });
}
