/**
 * A plugin's own output reaches `hecate plugin logs NAME` (real daemon, real CLI): console.* with their levels,
 * process.stdout/stderr writes line by line, and the SDK logger (`log` from @hecate/sdk, with fields and child
 * loggers), every line tagged with the plugin's name, none printed untagged on the daemon's stdout.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { after, before, test } from "node:test";
import type { LogLine } from "../src/client.js";
import { cliJson, FIXTURES, runCli, startTestDaemon, type TestDaemon } from "./helpers.js";

const NAME = "log-fixture";
let daemon: TestDaemon;

before(async () => {
  daemon = await startTestDaemon();
});
after(async () => {
  await daemon?.stop();
});

test("console.*, stdout/stderr writes and the SDK logger land in `hecate plugin logs`, tagged and levelled", async () => {
  const home = daemon.home;
  const installed = await runCli(["plugin", "install", join(FIXTURES, "log-plugin")], { home });
  assert.equal(installed.code, 0, installed.stderr);
  const r = await fetch(`${daemon.url}/plugin/${NAME}/api/speak`, { method: "POST" });
  assert.deepEqual(await r.json(), { spoke: true });

  const expected: [string, RegExp][] = [
    ["INFO ", /^printed at import$/],
    ["INFO ", /^init of log-fixture$/],
    ["INFO ", /^console\.log line 42 \{ nested: true \}$/],
    ["WARN ", /^console\.warn line$/],
    ["ERROR", /^Error: console\.error line\n {4}at /],
    ["DEBUG", /^console\.debug line$/],
    ["INFO ", /^written in two parts$/],
    ["ERROR", /^raw stderr line$/],
    ["INFO ", /^sdk info line \{"taskId":7\}$/],
    ["WARN ", /^sdk child warn \{"job":"cleanup","ms":12\}$/],
    ["ERROR", /^sdk error line \{"err":\{"name":"Error","message":"inner cause","stack":"Error: inner cause/],
    ["DEBUG", /^sdk debug line$/],
  ];
  // The lines come through the plugin host and the supervisor: wait until the last one is there.
  let human = "";
  for (let i = 0; i < 50 && !/sdk debug line/.test(human); i++) {
    human = (await runCli(["plugin", "logs", NAME, "-n", "100"], { home })).stdout;
    if (!/sdk debug line/.test(human)) await new Promise((resolve) => setTimeout(resolve, 100));
  }
  const prefix = /^\S+ (\w+ *) \[log-fixture\] /;
  const lines = human.split(/\n(?=\S+ \w+ +\[)/).filter(Boolean);
  for (const [level, msg] of expected) {
    assert.ok(
      lines.some((l) => {
        const m = prefix.exec(l);
        return m?.[1] === level && msg.test(l.slice(m[0].length).trimEnd());
      }),
      `expected a ${level.trim()} line ${msg} in:\n${human}`,
    );
  }

  // --json carries level, plugin and fields as data
  const { logs } = await cliJson<{ logs: LogLine[] }>(["plugin", "logs", NAME, "-n", "100"], { home });
  const info = logs.find((l) => l.msg === "sdk info line");
  assert.deepEqual(
    { level: info?.level, plugin: info?.plugin, fields: info?.fields },
    {
      level: "info",
      plugin: NAME,
      fields: { taskId: 7 },
    },
  );

  // The daemon's own output has them only as its structured lines, tagged with the plugin.
  for (const line of daemon.output.filter((l) => l.includes("console.warn line"))) {
    assert.equal(JSON.parse(line).plugin, NAME, line);
  }
  assert.ok(!daemon.output.some((l) => l.startsWith("printed at import")), "no untagged line on the daemon's stdout");
});
