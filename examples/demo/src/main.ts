/**
 * Starts every example at once, each in its own process with its own port, prints where each
 * listens, and stops them all on Ctrl+C (or when one of them exits).
 */
import { spawn, type ChildProcess } from "node:child_process"
import { existsSync } from "node:fs"
import { dirname, join } from "node:path"
import { fileURLToPath } from "node:url"

const examples = join(dirname(fileURLToPath(import.meta.url)), "..", "..")

interface Example {
  readonly name: string
  readonly dir: string
  readonly env: Readonly<Record<string, string>>
}

const all: ReadonlyArray<Example> = [
  { name: "rest-api", dir: "rest-api", env: { PORT: process.env["REST_PORT"] ?? "3000" } },
  {
    name: "webhooks",
    dir: "webhooks",
    env: {
      PORT: process.env["WEBHOOKS_PORT"] ?? "3100",
      RECEIVER_PORT: process.env["RECEIVER_PORT"] ?? "3101"
    }
  },
  { name: "chat", dir: "chat", env: { PORT: process.env["CHAT_PORT"] ?? "3200" } }
]

const children: Array<ChildProcess> = []
let stopping = false

const stop = (code: number) => {
  if (stopping) return
  stopping = true
  for (const child of children) if (child.exitCode === null) child.kill("SIGTERM")
  // Give them a moment to close their servers, then leave.
  setTimeout(() => process.exit(code), 1500).unref()
}

for (const example of all) {
  const main = join(examples, example.dir, "src", "main.ts")
  if (!existsSync(main)) {
    console.log(`[demo] ${example.name}: not present, skipped`)
    continue
  }
  const child = spawn(process.execPath, [main], {
    cwd: join(examples, example.dir),
    env: { ...process.env, ...example.env },
    stdio: ["ignore", "pipe", "pipe"]
  })
  children.push(child)
  const prefix = (stream: NodeJS.ReadableStream, out: NodeJS.WritableStream) => {
    let buffered = ""
    stream.setEncoding("utf8")
    stream.on("data", (chunk: string) => {
      buffered += chunk
      const lines = buffered.split("\n")
      buffered = lines.pop() ?? ""
      for (const line of lines) out.write(`[${example.name}] ${line}\n`)
    })
  }
  prefix(child.stdout!, process.stdout)
  prefix(child.stderr!, process.stderr)
  child.on("exit", (code, signal) => {
    if (!stopping) {
      console.log(`[demo] ${example.name} exited (${signal ?? code}); stopping the others`)
      stop(code ?? 1)
    }
  })
}

process.on("SIGINT", () => stop(0))
process.on("SIGTERM", () => stop(0))
