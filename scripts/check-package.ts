/**
 * The publishing check (`pnpm test:package`): packs the three packages as they would be published,
 * installs the tarballs with npm into a fresh project and uses them from there — plain JavaScript
 * on Node, and TypeScript against the published declarations.
 */
import { execFileSync, type ExecFileSyncOptions } from "node:child_process"
import {
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync
} from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"

const root = join(import.meta.dirname, "..")
const fixtures = join(import.meta.dirname, "package-check")
const packages = ["core", "ws", "webhooks"] as const
const started = Date.now()

const run = (command: string, args: ReadonlyArray<string>, options: ExecFileSyncOptions = {}): string =>
  String(execFileSync(command, args, { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"], ...options }))

const step = (message: string) => console.log(`[${((Date.now() - started) / 1000).toFixed(1)}s] ${message}`)

const fail = (message: string): never => {
  console.error(`package check failed: ${message}`)
  process.exit(1)
}

// pnpm sets npm_execpath to itself when it runs a script; else the pnpm on PATH, else npx's pnpm 10.
const onPath = (command: string): boolean => {
  try {
    run(command, ["--version"])
    return true
  } catch {
    return false
  }
}
const execPath = process.env["npm_execpath"]
const pnpm: readonly [string, ...Array<string>] =
  execPath !== undefined && /pnpm/.test(execPath)
    ? [process.execPath, execPath]
    : onPath("pnpm")
      ? ["pnpm"]
      : ["npx", "-y", "pnpm@10"]

const installedVersion = (name: string, from: string): string =>
  (JSON.parse(readFileSync(join(from, "node_modules", name, "package.json"), "utf8")) as { version: string })
    .version

const work = mkdtempSync(join(tmpdir(), "strata-package-check-"))
const packs = join(work, "packs")
const project = join(work, "project")
mkdirSync(packs)
mkdirSync(project)

// 1. Pack: each package's prepack builds its dist; pnpm applies publishConfig and replaces workspace:*.
const tarballs: Record<string, string> = {}
for (const name of packages) {
  const before = new Set(readdirSync(packs))
  try {
    run(pnpm[0], [...pnpm.slice(1), "pack", "--pack-destination", packs], {
      cwd: join(root, "packages", name),
      stdio: ["ignore", "ignore", "inherit"]
    })
  } catch {
    fail(`pnpm pack (and its build) failed for @strata/${name}`)
  }
  const tarball = readdirSync(packs).find((file) => !before.has(file) && file.endsWith(".tgz"))
  tarballs[name] = tarball ?? fail(`pnpm pack wrote no tarball for @strata/${name}`)
}
step(`packed ${Object.values(tarballs).join(", ")}`)

// 2. What the tarballs hold: compiled entry points, the declarations' imports rewritten to .js, no
//    build info or tests, and a package.json that points at dist with real dependency versions.
for (const name of packages) {
  const tarball = join(packs, tarballs[name]!)
  const files = run("tar", ["-tzf", tarball]).split("\n").filter(Boolean)
  for (const file of ["package/dist/index.js", "package/dist/index.d.ts", "package/dist/index.d.ts.map"]) {
    if (!files.includes(file)) fail(`${tarballs[name]} lacks ${file}`)
  }
  const stray = files.filter((file) =>
    /\.tsbuildinfo$|^package\/(test|typetest)\/|^package\/tsconfig/.test(file)
  )
  if (stray.length > 0) fail(`${tarballs[name]} ships ${stray.join(", ")}`)
  const manifest = JSON.parse(run("tar", ["-xzOf", tarball, "package/package.json"])) as {
    exports: Record<string, unknown>
    dependencies?: Record<string, string>
  }
  const dot = manifest.exports["."] as { types?: string; default?: string } | undefined
  if (dot?.types !== "./dist/index.d.ts" || dot.default !== "./dist/index.js") {
    fail(`${tarballs[name]}: exports["."] is ${JSON.stringify(dot)}`)
  }
  if (manifest.exports["./internal/*"] !== null) fail(`${tarballs[name]}: ./internal/* is exported`)
  const workspaceDeps = Object.entries(manifest.dependencies ?? {}).filter(([, v]) =>
    v.startsWith("workspace:")
  )
  if (workspaceDeps.length > 0) fail(`${tarballs[name]} depends on ${JSON.stringify(workspaceDeps)}`)
  for (const file of files.filter((f) => f.endsWith(".d.ts"))) {
    const text = run("tar", ["-xzOf", tarball, file])
    if (/(?:from|import)\s*\(?\s*["']\.{1,2}\/[^"']*\.ts["']/.test(text)) {
      fail(`${tarballs[name]}: ${file} imports a .ts file`)
    }
  }
}
step("tarballs hold dist, declarations and a package.json pointing at them")

// 3. Install needs the registry (effect and the packages' own dependencies); without it, say so.
try {
  run("npm", ["ping", "--fetch-retries=0", "--fetch-timeout=10000"], { timeout: 20_000 })
} catch (error) {
  const reason = String((error as { stderr?: unknown }).stderr ?? error)
    .split("\n")
    .find((line) => /ERR|error/i.test(line))
  console.log(
    `package check: install and use SKIPPED, the npm registry is unreachable (${reason ?? "npm ping failed"})`
  )
  rmSync(work, { recursive: true, force: true })
  process.exit(0)
}

// The project pins the versions the workspace tests with. Its TypeScript settings are a user's, not
// the workspace's (no allowImportingTsExtensions, no exactOptionalPropertyTypes), and it checks the
// installed declarations too (no skipLibCheck). The DOM library is there because Effect's own
// declarations name its types (CryptoKey), as core's Testing does (BodyInit).
const core = join(root, "packages", "core")
writeFileSync(
  join(project, "package.json"),
  JSON.stringify(
    {
      name: "strata-package-check",
      private: true,
      type: "module",
      dependencies: {
        ...Object.fromEntries(packages.map((name) => [`@strata/${name}`, `file:../packs/${tarballs[name]}`])),
        effect: installedVersion("effect", core),
        "@effect/platform-node": installedVersion("@effect/platform-node", core),
        "fast-check": installedVersion("fast-check", core)
      },
      devDependencies: { "@types/node": installedVersion("@types/node", root) }
    },
    null,
    2
  )
)
writeFileSync(
  join(project, "tsconfig.json"),
  JSON.stringify({
    compilerOptions: {
      target: "ES2023",
      lib: ["ES2023", "DOM"],
      module: "NodeNext",
      moduleResolution: "NodeNext",
      strict: true,
      skipLibCheck: false,
      noEmit: true,
      types: ["node"]
    },
    files: ["types.ts"]
  })
)
copyFileSync(join(fixtures, "app.mjs"), join(project, "app.mjs"))
copyFileSync(join(fixtures, "types.ts"), join(project, "types.ts"))

try {
  run("npm", ["install", "--no-audit", "--no-fund", "--prefer-offline", "--loglevel=error"], {
    cwd: project,
    timeout: 300_000,
    stdio: ["ignore", "ignore", "inherit"]
  })
} catch {
  fail(`npm install failed (project kept at ${project})`)
}
// ws and webhooks depend on @strata/core 0.1.0: the tarball must satisfy them, not a registry copy.
const nested = ["ws", "webhooks"].filter((name) =>
  existsSync(join(project, "node_modules", "@strata", name, "node_modules", "@strata", "core"))
)
if (nested.length > 0) fail(`@strata/${nested.join(", @strata/")} installed a second @strata/core`)
step("installed the tarballs with npm")

// 4. Plain JavaScript on Node.
try {
  process.stdout.write(
    run(process.execPath, ["app.mjs"], { cwd: project, stdio: ["ignore", "pipe", "inherit"] })
  )
} catch {
  fail(`app.mjs failed on Node ${process.version} (project kept at ${project})`)
}
step(`app.mjs ran on Node ${process.version}`)

// 5. TypeScript against the published declarations.
try {
  run(join(root, "node_modules", ".bin", "tsc"), ["-p", "tsconfig.json"], { cwd: project, stdio: "inherit" })
} catch {
  fail(`types.ts does not type-check (project kept at ${project})`)
}
step("types.ts type-checks: every @ts-expect-error line is an error")

rmSync(work, { recursive: true, force: true })
console.log(`package check passed in ${((Date.now() - started) / 1000).toFixed(1)}s`)
