/**
 * A real browser (Debian's chromium, driven by playwright-core) loads a page from the test server
 * and runs the real typed client — its TypeScript served with the types stripped by Node's
 * `stripTypeScriptTypes`, Effect from its `dist` through an import map — over a real WebSocket:
 * typed messages, requests, a topic, presence, and the reasons of refused handshakes.
 *
 * Without chromium the suite is skipped with a message on stderr; install it with
 * `apt-get install -y chromium`.
 */
import { NodeHttpServer } from "@effect/platform-node"
import { describe, expect, it } from "@effect/vitest"
import { App, Route, Router } from "@strata/core"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as HttpServer from "effect/http/HttpServer"
import * as HttpServerRequest from "effect/http/HttpServerRequest"
import * as HttpServerResponse from "effect/http/HttpServerResponse"
import { execFileSync } from "node:child_process"
import { existsSync, mkdtempSync, rmSync } from "node:fs"
import { readFile } from "node:fs/promises"
import { createServer } from "node:http"
import { createRequire, stripTypeScriptTypes } from "node:module"
import { tmpdir } from "node:os"
import { dirname, join, normalize, sep } from "node:path"
import { fileURLToPath } from "node:url"
import { chromium } from "playwright-core"
import { Hub } from "../src/index.ts"
import { auth, chat, chatRoute, UsersLive } from "./fixtures.ts"

const chromiumPath = (() => {
  for (const candidate of ["/usr/bin/chromium", "/usr/bin/chromium-browser"])
    if (existsSync(candidate)) return candidate
  try {
    return execFileSync("which", ["chromium"], { encoding: "utf8" }).trim() || undefined
  } catch {
    return undefined
  }
})()

if (chromiumPath === undefined) {
  process.stderr.write(
    "Browser.test.ts: skipped, chromium is not installed (install it with `apt-get install -y chromium`)\n"
  )
}

const packageRoot = fileURLToPath(new URL("..", import.meta.url))
const effectDist = join(dirname(createRequire(import.meta.url).resolve("effect/package.json")), "dist")
const coreSrc = dirname(createRequire(import.meta.url).resolve("@strata/core"))

const javascript = (body: string) =>
  HttpServerResponse.text(body, { contentType: "text/javascript; charset=utf-8" })

/** A file under `root`, never outside it. */
const inside = (root: string, path: string): string | undefined => {
  const full = normalize(join(root, decodeURIComponent(path)))
  return full.startsWith(root.endsWith(sep) ? root : root + sep) ? full : undefined
}

const serveFile = (root: string, strip: boolean, extension = "") =>
  Effect.gen(function* () {
    const request = yield* HttpServerRequest.HttpServerRequest
    const path = new URL(request.url, "http://x").pathname.split("/").slice(2).join("/")
    const file = inside(root, path.endsWith(".js") || path.endsWith(".ts") ? path : path + extension)
    if (file === undefined) return HttpServerResponse.empty({ status: 404 })
    const source = yield* Effect.promise(() => readFile(file, "utf8").catch(() => undefined))
    if (source === undefined) return HttpServerResponse.empty({ status: 404 })
    return javascript(strip ? stripTypeScriptTypes(source, { mode: "strip" }) : source)
  })

const page = `<!doctype html>
<html><head><meta charset="utf-8"><title>loading</title><link rel="icon" href="data:,">
<script type="importmap">${JSON.stringify({ imports: { "effect/": "/effect/", "@strata/core/": "/strata-core/" } })}</script>
<script type="module" src="/pkg/test/browser/page.ts"></script>
</head><body></body></html>`

const app = Router.make([
  Route.get("/", HttpServerResponse.html(page)),
  Route.get("/pkg/*", serveFile(packageRoot, true)),
  Route.get("/effect/*", serveFile(effectDist, false, ".js")),
  Route.get("/strata-core/*", serveFile(coreSrc, true, ".ts")),
  Router.group("/ws", [chatRoute()]).pipe(Router.use(auth))
])

const serverLayer = App.serve(app).pipe(
  Hub.drainFirst,
  Layer.provide(UsersLive),
  Layer.provide(Hub.layer()),
  Layer.provideMerge(NodeHttpServer.layer(createServer, { port: 0, host: "127.0.0.1" }))
)

// A fresh profile each run. Playwright refuses `--user-data-dir` among `launch`'s arguments and
// takes the directory through `launchPersistentContext` instead, which passes it to chromium.
const browser = Effect.acquireRelease(
  Effect.gen(function* () {
    const userDataDir = mkdtempSync(join(tmpdir(), "strata-chromium-"))
    const context = yield* Effect.promise(() =>
      chromium.launchPersistentContext(userDataDir, {
        executablePath: chromiumPath!,
        headless: true,
        args: [
          "--headless",
          "--no-sandbox",
          "--disable-gpu",
          "--disable-quic",
          "--no-first-run",
          "--disable-background-networking",
          "--disable-component-update",
          "--disable-sync"
        ]
      })
    )
    return { context, userDataDir }
  }),
  ({ context, userDataDir }) =>
    Effect.promise(async () => {
      await context.close()
      rmSync(userDataDir, { recursive: true, force: true })
    })
)

const openPage = Effect.gen(function* () {
  const { context } = yield* browser
  const server = yield* HttpServer.HttpServer
  const tab = yield* Effect.promise(() => context.newPage())
  const errors: Array<string> = []
  tab.on("pageerror", (error) => errors.push(String(error)))
  tab.on("console", (message) => {
    if (message.type() === "error") errors.push(message.text())
  })
  yield* Effect.promise(() => tab.goto(`${HttpServer.formatAddress(server.address)}/`))
  yield* Effect.promise(() =>
    tab.waitForFunction(() => document.title === "ready", undefined, { timeout: 15_000 })
  )
  return { tab, errors }
})

const suite = chromiumPath === undefined ? describe.skip : describe

suite("the client in a real browser", () => {
  it.live(
    "exchanges typed messages, requests, topic events and presence over a real WebSocket",
    () =>
      Effect.gen(function* () {
        const { tab, errors } = yield* openPage
        const result = yield* Effect.promise(() =>
          tab.evaluate(() =>
            (globalThis as unknown as { strataConversation: () => unknown }).strataConversation()
          )
        )
        expect(result).toEqual({
          welcome: { _tag: "Notice", text: "welcome Ada" },
          joined: "Joined",
          you: { _tag: "You", id: "1", name: "Ada" },
          history: ["hello", "world"],
          error: { _tag: "NoSuchRoom", room: "nowhere" },
          event: {
            _tag: "Message",
            offset: 1,
            epoch: expect.any(String),
            payload: { from: "Ada", text: "from the browser" }
          },
          members: [{ id: expect.any(String), meta: { name: "Ada" } }],
          status: { _tag: "Open" },
          protocol: chat.protocol
        })
        expect(errors).toEqual([])
      }).pipe(Effect.provide(serverLayer)),
    60_000
  )

  it.live(
    "learns why the server refused: another protocol version (400), no credentials (401)",
    () =>
      Effect.gen(function* () {
        const { tab } = yield* openPage
        const result: any = yield* Effect.promise(() =>
          tab.evaluate(() => (globalThis as unknown as { strataRefusals: () => unknown }).strataRefusals())
        )
        expect(result.stale).toMatchObject({ _tag: "Refused", status: 400, error: "ProtocolMismatch" })
        expect(result.stale.message).toContain("protocol version differs")
        expect(result.anonymous).toMatchObject({ _tag: "Refused", status: 401, error: "Unauthorized" })
      }).pipe(Effect.provide(serverLayer)),
    60_000
  )
})
