#!/usr/bin/env node
/**
 * The `hecate` binary. Every command takes `--json`; exit codes are in errors.ts (EXIT) and `hecate --help`.
 */
import { readFileSync } from "node:fs";
import { resolve } from "node:path";
import { hecateHome } from "@hecate/sdk/paths";
import { Command, CommanderError, InvalidArgumentError } from "commander";
import { AdminClient } from "./client.js";
import type { CommandContext } from "./commands/plugin.js";
import { CliError, EXIT, EXIT_CODES_HELP } from "./errors.js";
import { createOutput, printError } from "./output.js";

// Command modules are imported when their command runs: `plugin list` need not load the package tooling (ajv, tar).
const pluginCommands = () => import("./commands/plugin.js");
const packaging = () => import("./packaging.js");
const scaffold = () => import("./scaffold/index.js");

const VERSION: string = JSON.parse(readFileSync(new URL("../../package.json", import.meta.url), "utf8")).version;

interface GlobalOptions {
  json?: boolean;
  home?: string;
  url?: string;
  token?: string;
}

function globals(cmd: Command): GlobalOptions {
  return cmd.optsWithGlobals() as GlobalOptions;
}

function homeOf(cmd: Command): string {
  const h = globals(cmd).home;
  return h ? resolve(h) : hecateHome();
}

function positiveInt(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0) throw new InvalidArgumentError("expected a non-negative integer");
  return n;
}

/** Runs an admin-API command with a client, closing it afterwards. */
async function withClient(cmd: Command, fn: (ctx: CommandContext) => Promise<void>): Promise<void> {
  const g = globals(cmd);
  const home = homeOf(cmd);
  const url = g.url ?? process.env.HECATE_URL;
  const client = new AdminClient({ home, url, token: g.token ?? process.env.HECATE_TOKEN });
  try {
    // Plugin URLs are on the plugin port; --url is the admin's (its own port unless the daemon shares one).
    const baseUrl = process.env.HECATE_PUBLIC_URL ?? (url ? await pluginOrigin(client, url) : readDaemonUrl(home));
    await fn({ client, out: createOutput(Boolean(g.json)), baseUrl });
  } finally {
    await client.close();
  }
}

/**
 * Over --url: the plugin listener's origin, from the port the admin API lists (null when it shares the admin's).
 * When that cannot be asked (bad token, daemon down), the admin URL: the command itself then reports the error.
 */
async function pluginOrigin(client: AdminClient, adminUrl: string): Promise<string> {
  try {
    const { pluginPort } = await client.call<{ pluginPort?: number | null }>("GET", "/admin/api/plugins");
    if (!pluginPort) return adminUrl;
    const u = new URL(adminUrl);
    u.port = String(pluginPort);
    return u.origin;
  } catch {
    return adminUrl;
  }
}

/** The daemon's plugin URL, when `hecate start` published it in its run dir (used to print full plugin URLs). */
function readDaemonUrl(home: string): string | undefined {
  try {
    return readFileSync(resolve(home, "run", "url"), "utf8").trim() || undefined;
  } catch {
    return undefined;
  }
}

export function buildProgram(): Command {
  const program = new Command("hecate")
    .description("hecate: plugin-host daemon and its command-line client")
    .version(VERSION, "-V, --version", "print the hecate version")
    .option("--json", "machine-readable JSON output")
    .option("--home <dir>", "HECATE_HOME (default $HECATE_HOME or ~/.hecate)")
    .option(
      "--url <url>",
      "talk to the daemon's admin API over TCP at this URL (its admin port, see run/admin-url) instead of $HECATE_HOME/run/hecate.sock",
    )
    .option("--token <token>", "admin token for --url (default: $HECATE_HOME/run/admin.token)")
    .configureHelp({ showGlobalOptions: true })
    .addHelpText("after", EXIT_CODES_HELP)
    .showHelpAfterError("(run with --help for usage)")
    .exitOverride();

  program
    .command("start")
    .description("run the daemon in the foreground (Ctrl-C stops it gracefully)")
    .option("-p, --port <port>", "plugin TCP port (0 = ephemeral; default 7770 or $HECATE_PORT)")
    .option(
      "--admin-port <port>",
      'admin API + page port (default port + 1, e.g. 7771, or $HECATE_ADMIN_PORT; "shared" = on the plugin port: less safe, plugin pages are then same-origin with the admin)',
    )
    .option("--host <host>", "address to listen on (default 127.0.0.1 or $HECATE_HOST)")
    .option(
      "--allowed-hosts <names>",
      "extra Host names both ports answer (comma-separated name or name:port; loopback names and --host always; or $HECATE_ALLOWED_HOSTS)",
    )
    .option("--log-level <level>", "trace|debug|info|warn|error (default info)")
    .option("--require-signature", "accept only packages signed by a key in $HECATE_HOME/trusted-keys")
    .option("--json", "raw JSON log lines instead of pretty ones")
    .action(async (opts, cmd: Command) => {
      const { startCommand } = await import("./commands/start.js");
      const code = await startCommand({ ...opts, home: homeOf(cmd), json: Boolean(globals(cmd).json) });
      process.exitCode = code;
    });

  const plugin = program.command("plugin").description("manage plugins and plugin projects");

  plugin
    .command("install")
    .description(
      "install a plugin from a .tar.gz, a plugin project dir (packed first), an https:// URL (downloaded by the daemon) or an OCI image (oci://REGISTRY/REPO[:TAG|@sha256:DIGEST], pulled with a progress bar); prints its URL",
    )
    .argument("<source>", "package file (.tar.gz), plugin project directory, https://…/x.tar.gz, or oci://… image")
    .option("--no-wait", "return once the package is accepted, without waiting for it to load")
    .option("--key <file>", "sign the package with this ed25519 private key (PEM) before uploading")
    .option("--sha256 <hex>", "with a URL: the package's sha256; the daemon refuses a download that differs")
    .option("--json", "JSON output")
    .action((source: string, opts: { wait: boolean; key?: string; sha256?: string }, cmd: Command) =>
      withClient(cmd, async (ctx) => (await pluginCommands()).installCommand(ctx, source, opts)),
    );

  plugin
    .command("upgrade")
    .description(
      "replace an installed plugin with a new version (zero-downtime swap): upgrade <package|dir>, upgrade NAME oci://…:NEWTAG, or upgrade NAME https://…/x.tar.gz",
    )
    .argument("<source-or-name>", "package file (.tar.gz) or plugin project directory; or the plugin's name")
    .argument("[source]", "with a name: the oci://… image or https://… package to upgrade to")
    .option("--key <file>", "sign the package with this ed25519 private key (PEM) before uploading")
    .option("--reset-settings", "clear the plugin's settings when they do not fit the new version's schema")
    .option("--name <plugin>", "with an https:// URL: the plugin to upgrade")
    .option("--sha256 <hex>", "with a URL: the package's sha256; the daemon refuses a download that differs")
    .option("--json", "JSON output")
    .action(
      (
        first: string,
        source: string | undefined,
        opts: { key?: string; resetSettings?: boolean; name?: string; sha256?: string },
        cmd: Command,
      ) =>
        withClient(cmd, async (ctx) =>
          (await pluginCommands()).upgradeCommand(ctx, source ?? first, source ? { ...opts, name: first } : opts),
        ),
    );

  plugin
    .command("cancel")
    .description(
      "cancel a plugin's image pull (an install from oci:// leaves nothing; an upgrade keeps the old version)",
    )
    .argument("<name>")
    .option("--json", "JSON output")
    .action((name: string, _opts, cmd: Command) =>
      withClient(cmd, async (ctx) => (await import("./commands/oci.js")).cancelCommand(ctx, name)),
    );

  plugin
    .command("config")
    .description("show a plugin's settings, or set them: key=value ... (values parsed as JSON when they parse)")
    .argument("<name>")
    .argument("[assignments...]", "key=value pairs (value: JSON if it parses, else a string)")
    .option("--unset <key>", "remove a setting (repeatable)", (v: string, all: string[] = []) => [...all, v])
    .option("--json", "JSON output")
    .action((name: string, assignments: string[], opts: { unset?: string[] }, cmd: Command) =>
      withClient(cmd, async (ctx) =>
        (await import("./commands/config.js")).configCommand(ctx, name, assignments, opts),
      ),
    );

  plugin
    .command("list")
    .alias("ls")
    .description("list installed plugins (name, version, type, status, routes, last error)")
    .option("--json", "JSON output")
    .action((_opts, cmd: Command) => withClient(cmd, async (ctx) => (await pluginCommands()).listCommand(ctx)));

  plugin
    .command("info")
    .description("show a plugin: status, routes, manifest, last error and its lifecycle history")
    .argument("<name>")
    .option("--json", "JSON output")
    .action((name: string, _opts, cmd: Command) =>
      withClient(cmd, async (ctx) => (await pluginCommands()).infoCommand(ctx, name)),
    );

  for (const action of ["activate", "deactivate"] as const) {
    plugin
      .command(action)
      .description(
        action === "activate"
          ? "activate (load) a deactivated plugin"
          : "deactivate (unload) a plugin, keeping it installed",
      )
      .argument("<name>")
      .option("--json", "JSON output")
      .action((name: string, _opts, cmd: Command) =>
        withClient(cmd, async (ctx) => (await pluginCommands()).transitionCommand(ctx, name, action)),
      );
  }

  plugin
    .command("remove")
    .alias("rm")
    .description("remove a plugin (its data is kept unless --purge-data)")
    .argument("<name>")
    .option("--purge-data", "also delete the plugin's event store, read models and data dir")
    .option("--json", "JSON output")
    .action((name: string, opts: { purgeData?: boolean }, cmd: Command) =>
      withClient(cmd, async (ctx) =>
        (await pluginCommands()).removeCommand(ctx, name, { purgeData: Boolean(opts.purgeData) }),
      ),
    );

  plugin
    .command("logs")
    .description("print a plugin's recent log lines (--follow: keep streaming)")
    .argument("<name>")
    .option("-f, --follow", "stream new lines until interrupted")
    .option("-n, --tail <lines>", "number of recent lines", positiveInt, 100)
    .option("--json", "JSON output (with --follow: one JSON object per line)")
    .action((name: string, opts: { follow?: boolean; tail: number }, cmd: Command) =>
      withClient(cmd, async (ctx) =>
        (await pluginCommands()).logsCommand(ctx, name, { follow: Boolean(opts.follow), tail: opts.tail }),
      ),
    );

  plugin
    .command("dev")
    .description(
      "develop a plugin project: install it, then rebuild and hot-swap it into the daemon on every save, following its logs (Ctrl-C leaves it installed)",
    )
    .argument("[dir]", "plugin project directory", ".")
    .option("--remove", "remove the plugin when stopped (Ctrl-C)")
    .option("--key <file>", "sign every package with this ed25519 private key (PEM)")
    .option("--json", "JSON output (log lines as JSON objects)")
    .action((dir: string, opts: { remove?: boolean; key?: string }, cmd: Command) =>
      withClient(cmd, async (ctx) => (await import("./commands/dev.js")).devCommand(ctx, dir, opts)),
    );

  plugin
    .command("new")
    .description("scaffold a TypeScript plugin project (strict tsconfig, a passing test, pack/install/dev scripts)")
    .argument("<name>", "plugin name (lower-case letters, digits, - and _)")
    .option("--container", "a container plugin (runs in Podman via @hecate/sdk/container)")
    .option("--js", "JavaScript instead of TypeScript")
    .option("-d, --dir <dir>", "target directory (default ./<name>)")
    .option("--force", "write into a non-empty directory")
    .option("--json", "JSON output")
    .action(
      async (
        name: string,
        opts: { container?: boolean; js?: boolean; dir?: string; force?: boolean },
        cmd: Command,
      ) => {
        const out = createOutput(Boolean(globals(cmd).json));
        const r = await (await scaffold()).scaffoldPlugin(name, {
          container: Boolean(opts.container),
          js: Boolean(opts.js),
          dir: opts.dir,
          force: opts.force,
        });
        out.result(r, () => {
          const what = `${r.lang === "ts" ? "TypeScript" : "JavaScript"} ${r.kind === "container" ? "container " : ""}plugin`;
          out.line(`created ${what} ${r.name} in ${r.dir}`);
          for (const f of r.files) out.line(`  ${f}`);
          out.line(`\nnext: cd ${r.dir} && npm install && npm test && npm run install-plugin   (then: npm run dev)`);
        });
      },
    );

  plugin
    .command("link-sdk")
    .description(
      "point a plugin project's @hecate/sdk and @hecate/cli devDependencies at this installation (then run npm install)",
    )
    .argument("[dir]", "plugin project directory", ".")
    .option("--json", "JSON output")
    .action(async (dir: string, _opts, cmd: Command) => {
      const out = createOutput(Boolean(globals(cmd).json));
      const r = await (await scaffold()).linkProject(resolve(dir));
      out.result(r, () => {
        for (const [pkg, spec] of Object.entries(r.devDependencies)) out.line(`${pkg}: ${spec}`);
        out.line(`written to ${r.packageJson}: run npm install in ${resolve(dir)}`);
      });
    });

  plugin
    .command("pack")
    .description(
      "build the project (its build script, else tsc), then pack <name>-<version>.tar.gz with its production dependencies and SHA-256 file manifest",
    )
    .argument("[dir]", "plugin project directory", ".")
    .option("-o, --out <file>", "output file (default <dir>/<name>-<version>.tar.gz)")
    .option("--key <file>", "also sign it with this ed25519 private key (PEM)")
    .option("--no-build", "pack the project as it is, without running its build first")
    .option("--json", "JSON output")
    .action(async (dir: string, opts: { out?: string; key?: string; build: boolean }, cmd: Command) =>
      (await packaging()).packCommand(createOutput(Boolean(globals(cmd).json)), dir, opts),
    );

  plugin
    .command("sign")
    .description("sign a package (.tar.gz, rewritten in place or to --out) with an ed25519 private key")
    .argument("<package>", ".tar.gz file")
    .requiredOption("--key <file>", "ed25519 private key (PEM), e.g. from `hecate keygen`")
    .option("-o, --out <file>", "write the signed package here instead of replacing the input")
    .option("--json", "JSON output")
    .action(async (file: string, opts: { key: string; out?: string }, cmd: Command) =>
      (await packaging()).signCommand(createOutput(Boolean(globals(cmd).json)), file, opts),
    );

  plugin
    .command("verify")
    .description("check a package: archive safety, manifest, SHA-256 digests and signature")
    .argument("<package>", ".tar.gz file")
    .option("--trusted-keys <dir>", "dir of trusted public keys (*.pub; default $HECATE_HOME/trusted-keys)")
    .option("--require-signature", "fail unless signed by a trusted key")
    .option("--json", "JSON output")
    .action(async (file: string, opts: { trustedKeys?: string; requireSignature?: boolean }, cmd: Command) =>
      (await packaging()).verifyCommand(createOutput(Boolean(globals(cmd).json)), file, { ...opts, home: homeOf(cmd) }),
    );

  program
    .command("admin")
    .description("admin page login sessions")
    .command("logout-all")
    .description("end every admin page login session (browsers must log in again; the token and the CLI still work)")
    .option("--json", "JSON output")
    .action((_opts, cmd: Command) =>
      withClient(cmd, async ({ client, out }) => {
        const r = await client.call<{ revoked: number }>("DELETE", "/admin/api/sessions");
        out.result(r, () => out.line(`ended ${r.revoked} admin session(s)`));
      }),
    );

  const registry = program
    .command("registry")
    .description("OCI registry settings for oci:// installs (credentials, plain HTTP), kept 0600 in $HECATE_HOME");
  const registryCommands = () => import("./commands/registry.js");
  registry
    .command("login")
    .description("store credentials for a registry; the password (or token) is read from stdin, never shown")
    .argument("<registry>", "host[:port]")
    .requiredOption("-u, --username <name>", "user name")
    .option("--json", "JSON output")
    .action((reg: string, opts: { username: string }, cmd: Command) =>
      withClient(cmd, async (ctx) => (await registryCommands()).loginCommand(ctx, reg, opts)),
    );
  registry
    .command("logout")
    .description("forget a registry's credentials")
    .argument("<registry>", "host[:port]")
    .option("--json", "JSON output")
    .action((reg: string, _opts, cmd: Command) =>
      withClient(cmd, async (ctx) => (await registryCommands()).logoutCommand(ctx, reg)),
    );
  registry
    .command("set")
    .description("talk plain HTTP to a (non-loopback) registry with --insecure, or TLS again with --no-insecure")
    .argument("<registry>", "host[:port]")
    .option("--insecure", "plain HTTP (no TLS) for this registry")
    .option("--no-insecure", "TLS (the default)")
    .option("--json", "JSON output")
    .action((reg: string, opts: { insecure?: boolean }, cmd: Command) =>
      withClient(cmd, async (ctx) =>
        (await registryCommands()).setCommand(ctx, reg, { insecure: opts.insecure === true }),
      ),
    );
  registry
    .command("list")
    .alias("ls")
    .description("registries with settings (whether credentials are set; never a password)")
    .option("--json", "JSON output")
    .action((_opts, cmd: Command) => withClient(cmd, async (ctx) => (await registryCommands()).listCommand(ctx)));

  program
    .command("host")
    .description("the plugin-host processes")
    .command("recycle")
    .description(
      "replace the main plugin host with zero downtime (frees what unloaded isolation:shared plugins left in memory)",
    )
    .option("--json", "JSON output")
    .action((_opts, cmd: Command) =>
      withClient(cmd, async (ctx) => (await import("./commands/host.js")).hostRecycleCommand(ctx)),
    );

  program
    .command("keygen")
    .description("generate an ed25519 signing key pair (<name>.key private, <name>.pub public)")
    .option("-o, --out-dir <dir>", "where to write the keys", ".")
    .option("-n, --name <name>", "file name stem", "hecate-signing")
    .option("--trust", "also install the public key into $HECATE_HOME/trusted-keys")
    .option("--json", "JSON output")
    .action(async (opts: { outDir: string; name: string; trust?: boolean }, cmd: Command) =>
      (await packaging()).keygenCommand(createOutput(Boolean(globals(cmd).json)), { ...opts, home: homeOf(cmd) }),
    );

  // every (sub)command: exit codes in its help, usage errors reported by us (exit 2) instead of process.exit(1)
  const visit = (c: Command) => {
    c.exitOverride();
    c.showHelpAfterError("(run with --help for usage)");
    for (const sub of c.commands) visit(sub);
  };
  visit(program);
  return program;
}

export async function main(argv: string[]): Promise<number> {
  const program = buildProgram();
  const json = argv.includes("--json");
  try {
    await program.parseAsync(argv);
    return typeof process.exitCode === "number" ? process.exitCode : EXIT.OK;
  } catch (err) {
    if (err instanceof CommanderError) {
      // --help / --version end with a CommanderError too, with exit code 0
      if (err.exitCode === 0) return EXIT.OK;
      if (json) printError(new CliError(err.code.replace(/^commander\./, ""), err.message, EXIT.USAGE), true);
      return EXIT.USAGE;
    }
    printError(err, json);
    return err instanceof CliError ? err.exitCode : EXIT.FAILURE;
  }
}

const code = await main(process.argv);
process.exitCode = code;
