/**
 * Runs TypeScript's compiler on one project and reads what it reports: `--extendedDiagnostics`
 * statistics and the errors.
 */
import { spawnSync } from "node:child_process"
import { existsSync, readFileSync, realpathSync } from "node:fs"
import { createRequire } from "node:module"
import { dirname, join } from "node:path"

export interface Diagnostic {
  /** `file(line,col)`, or empty for a global error. */
  readonly location: string
  readonly code: number
  /** The whole message, continuation lines included. */
  readonly message: string
}

export interface Stats {
  readonly files: number
  readonly types: number
  readonly instantiations: number
  readonly memoryMB: number
  readonly checkS: number
  readonly totalS: number
}

export interface Run {
  /** Wall time of the process, spawn to exit. */
  readonly wallS: number
  readonly timedOut: boolean
  readonly exitCode: number | null
  /** Undefined when the compiler printed no statistics (it crashed or timed out). */
  readonly stats: Stats | undefined
  readonly diagnostics: ReadonlyArray<Diagnostic>
  /** TS2589, "Type instantiation is excessively deep and possibly infinite", anywhere in the output. */
  readonly ts2589: boolean
  /** The end of the output, for reports when something went wrong. */
  readonly tail: string
}

export interface Compiler {
  readonly version: string
  /** The command and its leading arguments. */
  readonly command: ReadonlyArray<string>
}

/**
 * The repo's TypeScript. TypeScript 7 ships a native `tsc` in a per-platform package; it is run
 * directly so the timings do not include a Node start. Falls back to the package's `bin/tsc`.
 */
export const findCompiler = (): Compiler => {
  const require = createRequire(import.meta.url)
  const pkgJson = realpathSync(require.resolve("typescript/package.json"))
  const version = (JSON.parse(readFileSync(pkgJson, "utf8")) as { readonly version: string }).version
  try {
    const platformPkg = createRequire(pkgJson).resolve(
      `@typescript/typescript-${process.platform}-${process.arch}/package.json`
    )
    const exe = join(dirname(platformPkg), "lib", process.platform === "win32" ? "tsc.exe" : "tsc")
    if (existsSync(exe)) return { version, command: [exe] }
  } catch {
    // not the native layout: use the launcher
  }
  return { version, command: [process.execPath, join(dirname(pkgJson), "bin", "tsc")] }
}

const numberAfter = (output: string, label: string): number | undefined => {
  const match = new RegExp(`^${label}:\\s+([\\d.]+)`, "m").exec(output)
  return match === null ? undefined : Number(match[1])
}

const readStats = (output: string): Stats | undefined => {
  const files = numberAfter(output, "Files")
  const types = numberAfter(output, "Types")
  const instantiations = numberAfter(output, "Instantiations")
  const memoryK = numberAfter(output, "Memory used")
  const checkS = numberAfter(output, "Check time")
  const totalS = numberAfter(output, "Total time")
  if (
    files === undefined ||
    types === undefined ||
    instantiations === undefined ||
    memoryK === undefined ||
    checkS === undefined ||
    totalS === undefined
  ) {
    return undefined
  }
  return { files, types, instantiations, memoryMB: memoryK / 1024, checkS, totalS }
}

const errorLine = /^(?:(.+\(\d+,\d+\)): )?error TS(\d+): (.*)$/

/** Errors as `--pretty false` prints them: one line each, continued by indented lines. */
export const readDiagnostics = (output: string): ReadonlyArray<Diagnostic> => {
  const out: Array<Diagnostic> = []
  let current: { location: string; code: number; lines: Array<string> } | undefined
  const flush = () => {
    if (current !== undefined) {
      out.push({ location: current.location, code: current.code, message: current.lines.join("\n") })
    }
    current = undefined
  }
  for (const line of output.split(/\r?\n/)) {
    const match = errorLine.exec(line)
    if (match !== null) {
      flush()
      current = { location: match[1] ?? "", code: Number(match[2]), lines: [match[3] ?? ""] }
    } else if (current !== undefined && /^\s+\S/.test(line)) {
      current.lines.push(line.trim())
    } else {
      flush()
    }
  }
  flush()
  return out
}

/**
 * `tsc --noEmit --extendedDiagnostics -p <tsconfig>` in `cwd` (errors name files relative to it),
 * killed after `timeoutS`.
 */
export const runTsc = (compiler: Compiler, tsconfig: string, timeoutS: number, cwd: string): Run => {
  const [command, ...leading] = compiler.command
  const start = process.hrtime.bigint()
  const result = spawnSync(
    command!,
    [...leading, "--noEmit", "--extendedDiagnostics", "--pretty", "false", "-p", tsconfig],
    { cwd, encoding: "utf8", timeout: timeoutS * 1000, killSignal: "SIGKILL", maxBuffer: 256 * 1024 * 1024 }
  )
  const wallS = Number(process.hrtime.bigint() - start) / 1e9
  const output = `${result.stdout ?? ""}${result.stderr ?? ""}`
  const timedOut = (result.error as NodeJS.ErrnoException | undefined)?.code === "ETIMEDOUT"
  const diagnostics = readDiagnostics(output)
  return {
    wallS,
    timedOut,
    exitCode: result.status,
    stats: readStats(output),
    diagnostics,
    ts2589: diagnostics.some((d) => d.code === 2589) || output.includes("TS2589"),
    tail: output.length > 4000 ? output.slice(-4000) : output
  }
}
